"""PDF rendering: autoescaped Jinja2 templates laid out by WeasyPrint, with nothing fetched from outside."""

from __future__ import annotations

import gc
import io
import logging
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.util.types import AttributeValue
from pypdf import PdfReader, PdfWriter
from weasyprint import CSS, HTML
from weasyprint.text.fonts import FontConfiguration
from weasyprint.urls import URLFetcher, URLFetcherResponse

from core.locales import DEFAULT, direction
from core.metrics import rendering
from core.tracing import span
from models.deliveries import DocumentKind
from services.fonts import drop_unused_fonts, font_configuration
from services.i18n import translations
from services.storage import DocumentKey
from services.templating import TEMPLATES_DIR, environment

log = logging.getLogger("ticketq.documents")
# WeasyPrint narrates every step of every layout at INFO: eight lines per order, in every worker log.
logging.getLogger("weasyprint.progress").setLevel(logging.WARNING)

ASSET_SCHEME = "ticketq-asset:"
ASSET_SUFFIXES = {".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png"}
STYLESHEETS = ("documents.css", "ticket.css")  # parsed once per process, as one stylesheet


class AssetOnlyFetcher(URLFetcher):  # type: ignore[misc]
    """Serves `ticketq-asset:<name>` from the packaged templates directory and refuses every other URL.

    A template never needs the network or the file system; refusing here means even markup that
    slipped past autoescaping cannot read /etc/passwd or call an internal HTTP service.
    """

    def __init__(self) -> None:
        super().__init__(allowed_protocols=())
        self.refused: list[str] = []

    def fetch(self, url: str, headers: Any = None) -> URLFetcherResponse:
        if url.startswith(ASSET_SCHEME):
            path = (TEMPLATES_DIR / url.removeprefix(ASSET_SCHEME).lstrip("/")).resolve()
            if path.is_relative_to(TEMPLATES_DIR.resolve()) and path.suffix in ASSET_SUFFIXES and path.is_file():
                return URLFetcherResponse(url, path.read_bytes(), {"Content-Type": ASSET_SUFFIXES[path.suffix]})
        self.refused.append(url)
        log.warning("refused to fetch %r while rendering", url[:200])
        raise ValueError(f"ticketq renders only packaged assets; refused {url[:200]!r}")


@dataclass
class Renderer:
    """Per-process state: built once, because font discovery and CSS parsing cost more than a page."""

    font_config: FontConfiguration
    stylesheet: CSS
    lock: threading.Lock = field(default_factory=threading.Lock)


_renderer: Renderer | None = None
_renderer_lock = threading.Lock()


def stylesheet(name: str) -> CSS:
    """A packaged stylesheet, parsed with the renderer's fonts; callers keep it (parsing costs more than a page)."""
    return CSS(string=(TEMPLATES_DIR / "pdf" / name).read_text(), font_config=renderer().font_config,
               url_fetcher=AssetOnlyFetcher())


def renderer() -> Renderer:
    global _renderer
    with _renderer_lock:
        if _renderer is None:
            font_config = font_configuration()  # the packaged Noto fonts: real glyphs in any script
            css = CSS(string="\n".join((TEMPLATES_DIR / "pdf" / name).read_text() for name in STYLESHEETS),
                      font_config=font_config, url_fetcher=AssetOnlyFetcher())
            _renderer = Renderer(font_config=font_config, stylesheet=css)
        return _renderer


@dataclass(frozen=True)
class RenderedOrder:
    """One layout of the whole order, and the page ranges each document takes from it."""

    pdf: bytes
    ticket_pages: dict[int, list[int]]  # attendee id -> page indexes
    invoice_pages: list[int]
    # Title and author of each document: pypdf's split starts each file afresh, without the layout's.
    info: dict[DocumentKey, dict[str, str]] = field(default_factory=dict)


def render_html(html: str, fetcher: AssetOnlyFetcher | None = None, variant: str | None = None,
                stylesheets: Sequence[CSS] = ()) -> tuple[bytes, list[dict[str, Any]]]:
    """Lay out HTML once; return the PDF and each page's anchors (which ticket it shows).

    `variant` is WeasyPrint's pdf_variant: the invoice is PDF/A-3b, which Factur-X builds on;
    `stylesheets` come after documents.css (parsed once by their owner, like it)."""
    state = renderer()
    with state.lock:  # WeasyPrint's font configuration is not meant for concurrent layouts
        document = HTML(string=html, url_fetcher=fetcher or AssetOnlyFetcher(), base_url=ASSET_SCHEME).render(
            stylesheets=[state.stylesheet, *stylesheets], font_config=state.font_config
        )
        anchors = [dict(page.anchors) for page in document.pages]
        if variant is None:
            return document.write_pdf(), anchors
        with warnings.catch_warnings():
            # WeasyPrint 70 opens its sRGB profile for a PDF/A's output intent and leaves the closing to
            # the garbage collector: a ResourceWarning at once, about a file it has already read.
            warnings.simplefilter("ignore", ResourceWarning)
            return document.write_pdf(pdf_variant=variant), anchors


class _CollectorPause:
    """The cyclic garbage collector off while any layout or split runs, one young collection after.

    A layout's graph of boxes lives until its PDF is written, so collecting during it finds nothing
    and only walks the graph again and again (measured in bench/ANALYSIS.md). A counter, not a flag:
    layouts in two threads leave it off until both are done."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0
        self._was_enabled = False

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._running == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._running += 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1
                last = self._running == 0 and self._was_enabled
                if last:
                    gc.enable()
            if last:
                gc.collect(0)


collector_paused = _CollectorPause()


def render_order(context: dict[str, Any], attendee_ids: Sequence[int]) -> RenderedOrder:
    """Tickets (one page each) and the invoice in ONE layout; documents are page ranges of it."""
    locale = context.get("locale", DEFAULT)  # a context built without one is English
    attributes: dict[str, AttributeValue] = {"ticketq.order": str(context["identifier"]), "ticketq.locale": locale,
                                             "ticketq.document.kind": "order", "ticketq.attendees": len(attendee_ids)}
    with span("render order", attributes) as traced, collector_paused(), rendering("layout"):
        html = environment(locale).get_template("pdf/order.html").render(
            **{**context, "locale": locale, "dir": direction(locale)})
        pdf, anchors = render_html(html)
        traced.set_attribute("ticketq.pages", len(anchors))
    ticket_pages: dict[int, list[int]] = {a: [] for a in attendee_ids}
    invoice_pages: list[int] = []
    owner: int | None = None  # a ticket too long for one page continues on the next
    for index, names in enumerate(anchors):
        for name in names:
            if name.startswith("ticket-"):
                owner = int(name.removeprefix("ticket-"))
            elif name == "invoice":
                owner = -1
        if owner == -1:
            invoice_pages.append(index)
        elif owner is not None:
            ticket_pages[owner].append(index)
    return RenderedOrder(pdf=pdf, ticket_pages=ticket_pages, invoice_pages=invoice_pages,
                         info=document_info(context, attendee_ids))


def document_info(context: dict[str, Any], attendee_ids: Sequence[int]) -> dict[DocumentKey, dict[str, str]]:
    """What a PDF viewer shows as each document's title, and its author: the event's organizer."""
    event, author = str(context["event"]["name"]), str(context["seller"]["name"])
    invoice = context.get("invoice") or {}
    names = {a["id"]: a["name"] for a in context["attendees"]}
    _ = translations(context.get("locale", DEFAULT)).gettext
    info: dict[DocumentKey, str] = {
        (DocumentKind.TICKETS, None): _("Tickets · %(event)s") % {"event": event},
        (DocumentKind.INVOICE, None): _("Invoice %(number)s · %(event)s") % {
            "number": invoice.get("number", ""), "event": event}}
    for attendee_id in attendee_ids:
        info[(DocumentKind.ATTENDEE_TICKET, attendee_id)] = _("Ticket · %(event)s · %(name)s") % {
            "event": event, "name": names.get(attendee_id, "")}
    return {key: {"/Title": title, "/Author": author} for key, title in info.items()}


def split_pages(reader: PdfReader, pages: Sequence[int], info: dict[str, str] | None = None) -> bytes:
    writer = PdfWriter()
    for index in pages:
        writer.add_page(reader.pages[index])
    if info:
        writer.add_metadata(info)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def order_documents(rendered: RenderedOrder) -> dict[DocumentKey, bytes]:
    """The tickets PDF, one PDF per attendee and the invoice, cut from the one layout with pypdf."""
    with collector_paused():
        return _split_documents(rendered)


def _split_documents(rendered: RenderedOrder) -> dict[DocumentKey, bytes]:
    reader = PdfReader(io.BytesIO(rendered.pdf))
    for page in reader.pages:
        drop_unused_fonts(page)  # else every PDF of the order carries every font of the order (a CJK one: 100 kB)
    all_tickets = sorted(p for pages in rendered.ticket_pages.values() for p in pages)
    parts: dict[DocumentKey, Sequence[int]] = {(DocumentKind.TICKETS, None): all_tickets}
    if rendered.invoice_pages:  # the invoice is its own PDF/A-3 layout now (services/einvoice.py)
        parts[(DocumentKind.INVOICE, None)] = rendered.invoice_pages
    parts.update({(DocumentKind.ATTENDEE_TICKET, a): pages for a, pages in rendered.ticket_pages.items()})
    documents: dict[DocumentKey, bytes] = {}
    for key, pages in parts.items():
        with rendering(key[0].value):  # timed per document kind (README "Metrics")
            documents[key] = split_pages(reader, pages, rendered.info.get(key))
    return documents


SAMPLE_ORDER: dict[str, Any] = {
    "identifier": "0" * 32,
    "locale": "en",
    "dir": "ltr",
    "status": "completed",
    "event": {"name": "Warm-up", "location": "", "date": "Monday 01 January 2029", "time": "10:00 – 11:00 UTC",
              "when": "Monday 01 January 2029, 10:00 – 11:00 (UTC)", "timezone": "UTC"},
    "buyer": {"name": "Ada Lovelace", "email": "ada@example.org"},
    "seller": {"name": "ticketq", "email": "tickets@example.org", "event": "Warm-up"},
    "attendees": [{"id": 1, "number": 1, "name": "Ada Lovelace", "email": "ada@example.org", "ticket": "Standard",
                   "secret": "warm-up", "code": "00000-00000", "price": "Free"}],
    "order_code": "00000000",
    "total": "€0.00",
    "payment_mode": "free",
    "invoice": None,
    "credit_note": None,
}


def warm_up() -> None:
    """Lay out and split a sample order once per process, before the first job: font discovery, CSS
    parsing and WeasyPrint's and pypdf's caches are then paid by nobody waiting for tickets. Only in
    the default language: another one's catalog and fonts load with its first order (0.1-0.3 s once
    per process), and a worker whose events are all in one language never loads them."""
    order_documents(render_order({**SAMPLE_ORDER, "locale": DEFAULT, "dir": direction(DEFAULT)}, [1]))


def freeze_heap() -> None:
    """Take everything alive after the warm-up out of the cyclic garbage collector's sight (gc.freeze,
    meant for prefork servers): full collections stop walking Celery, SQLAlchemy and WeasyPrint's
    caches; what each job allocates is still collected."""
    gc.collect()
    gc.freeze()
