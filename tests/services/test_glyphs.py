"""Names in eight scripts print with real glyphs from the packaged fonts, and read correctly in the emails.

"Real glyph" is checked in the PDF itself, not in its extracted text: for every character of every
name, the glyph drawn for it (content stream -> font -> ToUnicode) must be a glyph with an outline in
the embedded font, from the packaged face meant for that script, and (outside Arabic, whose letters
take contextual forms) exactly the glyph that face's cmap gives the character. A missing glyph
(WeasyPrint's .notdef box, drawn as id 0 or an id past the font's end) fails all three.
"""

from __future__ import annotations

import io
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from functools import cache

import pytest
from fontTools.pens.boundsPen import BoundsPen
from fontTools.ttLib import TTFont
from pypdf import PdfReader
from pypdf.generic import ContentStream, DictionaryObject
from sqlalchemy.orm import Session, sessionmaker

from core.jobs import CONFIRM_TASK
from models.deliveries import DocumentKind
from services.einvoice import SAMPLE_INVOICE, render_invoice
from services.fonts import packaged_faces, text_direction
from services.rendering import SAMPLE_ORDER, order_documents, render_order
from tests.backends import CeleryWorker
from tests.tasks.confirm_helpers import BUYER, attachments, by_kind, confirmed_order, wait_settled
from ticketq.embedded import SmtpSink
from worker import app

# name -> the packaged family that must draw it
NAMES = {
    "Zoë Ångström-Çelik": "ticketq Sans",          # Latin with diacritics
    "Αλέξανδρος Παπαδόπουλος": "ticketq Sans",     # Greek
    "Дмитрий Шостакович": "ticketq Sans",          # Cyrillic
    "李小龙": "ticketq CJK",                        # Chinese
    "山田花子": "ticketq CJK",                      # Japanese (kanji)
    "鈴木さくら": "ticketq CJK",                    # Japanese (kanji and hiragana)
    "김민준": "ticketq CJK",                        # Korean
    "محمد عبد الله": "ticketq Arabic",              # Arabic: joined letters, the ligature of الله
    "דוד בן-גוריון": "ticketq Hebrew",              # Hebrew
}
ARABIC, HEBREW = "محمد عبد الله", "דוד בן-גוריון"
EVENT = "Fête de la Musique 東京 2029"
FAMILIES = {face.family for face in packaged_faces()}


@dataclass(frozen=True)
class Glyph:
    family: str  # the packaged family the PDF font came from ("ticketq Sans"), or its BaseFont if not ours
    bold: bool
    gid: int
    text: str  # what ToUnicode says the glyph stands for (several characters for a ligature)
    has_outline: bool
    line: int  # its text object: within one, runs follow each other from left to right


@cache
def source_cmap(family: str, bold: bool) -> dict[int, int]:
    """Character -> glyph id in the packaged face itself (the subset in the PDF keeps its glyph ids)."""
    faces = [f for f in packaged_faces() if f.family == family]
    face = next((f for f in faces if ("Bold" in f.path.name) == bold), faces[0])  # CJK: one weight
    with TTFont(str(face.path), fontNumber=face.index, lazy=True) as font:
        return {char: font.getGlyphID(name) for char, name in font.getBestCmap().items()}


def to_unicode(font: DictionaryObject) -> dict[int, str]:
    cmap = font["/ToUnicode"].get_object().get_data().decode("latin-1")
    found = {}
    for block in re.findall(r"beginbfchar(.*?)endbfchar", cmap, re.S):
        for gid, text in re.findall(r"<([0-9a-fA-F]+)>\s*<([0-9a-fA-F]*)>", block):
            found[int(gid, 16)] = bytes.fromhex(text).decode("utf-16-be")
    return found


def outlines(font: DictionaryObject) -> tuple[TTFont, set[int]]:
    """The embedded font program and the ids of the glyphs in it that draw something."""
    descriptor = font["/DescendantFonts"][0].get_object()["/FontDescriptor"].get_object()
    program = next(descriptor[k].get_object().get_data() for k in ("/FontFile2", "/FontFile3") if k in descriptor)
    embedded = TTFont(io.BytesIO(program))
    glyphs = embedded.getGlyphSet()
    drawn = set()
    for gid, name in enumerate(embedded.getGlyphOrder()):
        pen = BoundsPen(glyphs)
        glyphs[name].draw(pen)
        if pen.bounds is not None:
            drawn.add(gid)
    return embedded, drawn


def drawn_runs(pdf: bytes) -> Iterator[list[Glyph]]:
    """Each TJ/Tj of each page, in drawing order: the glyphs as the PDF draws them."""
    reader = PdfReader(io.BytesIO(pdf))
    fonts: dict[str, tuple[str, bool, dict[int, str], set[int]]] = {}
    for page in reader.pages:
        resources = page["/Resources"]["/Font"]
        current, line = None, 0
        for operands, operator in ContentStream(page.get_contents(), reader).operations:
            if operator == b"BT":
                line += 1
            elif operator == b"Tf":
                font = resources[operands[0]].get_object()
                key = str(font["/BaseFont"])  # the subset tag makes it unique in the file
                if key not in fonts:
                    base = key.split("+", 1)[-1]
                    family = next((f.family for f in packaged_faces() if base.startswith(f.family.replace(" ", "-"))),
                                  base)
                    fonts[key] = (family, base.endswith("-Bold"), to_unicode(font), outlines(font)[1])
                current = fonts[key]
            elif operator in (b"TJ", b"Tj") and current:
                family, bold, texts, with_outline = current
                items = operands[0] if operator == b"TJ" else operands
                data = b"".join(getattr(i, "original_bytes", b"") for i in items if not isinstance(i, (int, float)))
                gids = [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]
                yield [Glyph(family, bold, g, texts.get(g, ""), g in with_outline, line) for g in gids]


def assert_real_glyphs(pdf: bytes, names: dict[str, str]) -> None:
    runs = list(drawn_runs(pdf))
    glyphs = [g for run in runs for g in run]
    for name, family in names.items():
        shaped = False
        for char in set(name) - {" "}:
            drawn = [g for g in glyphs if char in g.text]
            assert drawn, f"{char!r} of {name!r} is not drawn at all"
            for glyph in drawn:
                assert glyph.gid != 0 and glyph.has_outline, f"{char!r} of {name!r} is a missing-glyph box: {glyph}"
            others = {g.family for g in drawn} - FAMILIES
            assert not others, f"{char!r} of {name!r} is drawn with {sorted(others)}, not a packaged font"
            if not unicodedata.category(char).startswith(("L", "M")):
                family_of_char = next(g.family for g in drawn)  # a hyphen or digit: whichever packaged font has it
            else:
                family_of_char = family
            ours = [g for g in drawn if g.family == family_of_char]
            assert ours, f"{char!r} of {name!r} is drawn with {sorted({g.family for g in drawn})}, not {family}"
            for glyph in ours:
                cmap = source_cmap(glyph.family, glyph.bold)
                assert ord(char) in cmap, f"{family_of_char} does not cover {char!r}"
                mapped = cmap[ord(char)]
                if family_of_char == "ticketq Arabic":
                    shaped |= glyph.gid != mapped  # an initial, medial or final form, or a ligature
                elif len(glyph.text) == 1:
                    assert glyph.gid == mapped, f"{char!r} of {name!r}: glyph {glyph.gid}, its font maps {mapped}"
        if family == "ticketq Arabic":
            assert shaped, f"{name!r} is drawn with isolated letter forms only: not shaped"
    assert not [g for g in glyphs if g.gid == 0], "a .notdef box is drawn"


def visual_text(pdf: bytes) -> list[str]:
    """What each drawn run shows, left to right, as text."""
    return ["".join(g.text for g in run) for run in drawn_runs(pdf)]


def assert_right_to_left(pdf: bytes, name: str) -> None:
    """Drawn from the right: read from the last glyph drawn to the first, the page shows the name
    (glyph by glyph, so a ligature's characters stay in their order); left to right it does not."""
    glyphs = [g.text for run in drawn_runs(pdf) for g in run]
    assert name in "".join(reversed(glyphs)), f"{name!r} is not drawn right to left; runs: {visual_text(pdf)}"
    assert name not in "".join(glyphs)


def left_to_right(pdf: bytes, first: str, second: str) -> bool:
    """Whether `first` is drawn left of `second` on the same line."""
    glyphs = [g for run in drawn_runs(pdf) for g in run]
    b = next(i for i, g in enumerate(glyphs) if second in g.text)
    a = next(i for i, g in enumerate(glyphs) if first in g.text and g.line == glyphs[b].line)
    return a < b


def sample(names: list[str], buyer: str | None = None) -> dict[str, object]:
    context = {**SAMPLE_ORDER, "buyer": {"name": buyer or names[0], "email": "buyer@example.org"}}
    context["attendees"] = [{"id": i + 1, "number": i + 1, "name": n, "email": "", "ticket": "Standard",
                             "secret": f"s-{i}"} for i, n in enumerate(names)]
    return context


def ticket(names: list[str]) -> bytes:
    """One attendee's ticket PDF, through the real rendering path."""
    rendered = render_order(sample(names), list(range(1, len(names) + 1)))
    return order_documents(rendered)[(DocumentKind.ATTENDEE_TICKET, 1)]


def test_every_script_prints_with_the_packaged_fonts_and_rtl_names_read_from_the_right() -> None:
    names = list(NAMES)
    rendered = render_order(sample(names, buyer=ARABIC), list(range(1, len(names) + 1)))
    documents = order_documents(rendered)
    assert_real_glyphs(documents[(DocumentKind.TICKETS, None)], NAMES)
    invoice = render_invoice({}, {**SAMPLE_INVOICE, "buyer": {"name": ARABIC, "email": "buyer@example.org"}})
    assert_real_glyphs(invoice, {ARABIC: "ticketq Arabic"})
    hebrew = documents[(DocumentKind.ATTENDEE_TICKET, names.index(HEBREW) + 1)]
    assert_right_to_left(hebrew, HEBREW)
    assert_right_to_left(documents[(DocumentKind.ATTENDEE_TICKET, names.index(ARABIC) + 1)], ARABIC)
    labels = [g for run in drawn_runs(hebrew) for g in run if g.bold]
    assert labels and {g.family for g in labels} == {"ticketq Sans"}  # the DATE/TIME labels: packaged bold


def fonts_in(pdf: bytes) -> set[str]:
    return {g.family for run in drawn_runs(pdf) for g in run}


def test_pdfs_embed_only_the_fonts_and_glyphs_they_use() -> None:
    latin, cjk = ticket(["Ada Lovelace"]), ticket(["李小龙"])
    # The whole packaged fonts are 0.9 MB (Noto Sans) and 19 MB (Noto Sans CJK).
    assert len(latin) < 40_000, len(latin)
    assert len(cjk) < 200_000, len(cjk)
    documents = order_documents(render_order(sample(["Ada Lovelace", "李小龙"]), [1, 2]))
    ada, bruce = documents[(DocumentKind.ATTENDEE_TICKET, 1)], documents[(DocumentKind.ATTENDEE_TICKET, 2)]
    assert "ticketq CJK" in fonts_in(bruce) and len(PdfReader(io.BytesIO(bruce)).pages) == 1
    # the other attendee's ticket and the invoice do not carry the CJK font they do not show
    for pdf in (ada, render_invoice({}, SAMPLE_INVOICE)):
        assert "CJK" not in str(pdf_fonts(pdf)) and len(pdf) < 40_000, (pdf_fonts(pdf), len(pdf))


def pdf_fonts(pdf: bytes) -> set[str]:
    """Every font object in the file, used or not."""
    reader = PdfReader(io.BytesIO(pdf))
    return {str(font.get_object()["/BaseFont"]) for page in reader.pages
            for font in page["/Resources"]["/Font"].values()}


def test_a_right_to_left_name_keeps_its_direction_beside_latin_letters() -> None:
    """"محمد (Mo)" reads from the right: the Arabic first, at the right, "(Mo)" after it, to its left."""
    assert left_to_right(ticket(["محمد (Mo)"]), "M", "م")
    assert left_to_right(ticket(["Dana דנה"]), "D", "ד")  # a left-to-right name with a Hebrew part


@pytest.mark.parametrize(("text", "direction"), [
    (ARABIC, "rtl"), (HEBREW, "rtl"), ("Zoë", "ltr"), ("李小龙", "ltr"), ("", "ltr"), ("  (2) דוד", "rtl"),
    ("42 Ada", "ltr"), (None, "ltr"),
])
def test_a_name_takes_the_direction_of_its_first_letter(text: str | None, direction: str) -> None:
    assert text_direction(text) == direction


def body(message: EmailMessage, kind: str) -> str:
    part = message.get_body((kind,))
    assert part is not None and part.get_content_charset() == "utf-8"
    return str(part.get_content())  # type: ignore[attr-defined]


def test_a_confirmed_order_sends_names_in_eight_scripts_intact(
    db: sessionmaker[Session], celery_worker: CeleryWorker, smtp: SmtpSink
) -> None:
    hebrew_email = "david@example.org"
    attendees = [(n, hebrew_email if n == HEBREW else BUYER) for n in NAMES]
    identifier = confirmed_order(db, attendees, buyer_name=ARABIC, event_name=EVENT)
    app.send_task(CONFIRM_TASK, args=[identifier], queue="orders")
    rows = wait_settled(db, identifier, 3)
    assert [r.last_error for r in rows] == [None] * 3
    mails = by_kind(smtp.messages)

    buyer = mails[("confirmation-buyer", BUYER)]
    subject = dict(buyer.raw_items())["Subject"]
    assert subject.isascii() and "=?utf-8?" in subject.lower()  # RFC 2047 on the wire
    assert EVENT in str(buyer["Subject"])
    text, html = body(buyer, "plain"), body(buyer, "html")
    for name in (*NAMES, ARABIC):
        assert name in text
        assert f"<bdi>{name}</bdi>" in html  # its own direction in the mail client
    files = {name.rpartition(" - ")[2]: pdf for name, pdf in attachments(buyer).items()}
    assert_real_glyphs(files["tickets.pdf"], NAMES)
    invoice = next(pdf for name, pdf in files.items() if name.startswith("invoice"))
    assert_real_glyphs(invoice, {ARABIC: "ticketq Arabic"})

    david = mails[("confirmation-attendee", hebrew_email)]
    assert f"Hello {HEBREW}," in body(david, "plain")
    assert f"Hello <bdi>{HEBREW}</bdi>," in body(david, "html")
    (own,) = [content for filename, content in attachments(david).items() if filename.endswith(".pdf")]
    assert_real_glyphs(own, {HEBREW: "ticketq Hebrew"})
    assert_right_to_left(own, HEBREW)

    organizer = mails[("organizer-notification", "owner@example.org")]
    assert ARABIC in body(organizer, "plain") and f"<bdi>{ARABIC}</bdi>" in body(organizer, "html")
