"""The fonts ticketq ships (Noto, OFL) and the writing direction of a name: real glyphs in any script."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from fontTools.ttLib import TTCollection
from pypdf import PageObject
from pypdf.generic import DictionaryObject, NameObject
from weasyprint.text.ffi import ffi, fontconfig, pangoft2
from weasyprint.text.fonts import FontConfiguration

import templates

FONTS_DIR = Path(templates.__file__).resolve().parent / "fonts"
CJK_FACE = "Noto Sans CJK SC"  # Han in Chinese forms by default; kana and hangul are in every face
CJK_JAPANESE_FACE = "Noto Sans CJK JP"  # Han in Japanese forms, for documents in Japanese


@dataclass(frozen=True)
class Face:
    """One font file (or one face of a collection) and the family name the stylesheets ask for."""

    family: str
    path: Path
    index: int = 0


def cjk_collection() -> Path:
    """Noto Sans CJK from its PyPI wheel: 19 MB, too large for the repository."""
    import noto_cjk_sans_otc

    return Path(str(noto_cjk_sans_otc.FONT_PATH))


@lru_cache(maxsize=1)
def packaged_faces() -> tuple[Face, ...]:
    """Noto Sans, Arabic and Hebrew (regular and bold, in templates/fonts) and the CJK face to use."""
    faces = [Face(f"ticketq {family}", FONTS_DIR / f"NotoSans{script}-{style}.ttf")
             for family, script in (("Sans", ""), ("Arabic", "Arabic"), ("Hebrew", "Hebrew"))
             for style in ("Regular", "Bold")]
    collection = cjk_collection()
    with TTCollection(str(collection), lazy=True) as faces_of_collection:
        names = [font["name"].getDebugName(4) for font in faces_of_collection.fonts]
    faces.append(Face("ticketq CJK", collection, names.index(CJK_FACE)))
    faces.append(Face("ticketq CJK JP", collection, names.index(CJK_JAPANESE_FACE)))
    return tuple(faces)


def alias_rule(face: Face) -> bytes:
    """Fontconfig XML giving one face our family name, matched by file (and index), as WeasyPrint's
    own @font-face does: whatever Noto the system has, the stylesheet gets exactly these files."""
    return (
        '<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "urn:fontconfig:fonts.dtd"><fontconfig>'
        '<match target="scan">'
        f'<test name="file" compare="eq"><string>{escape(face.path.as_posix())}</string></test>'
        f'<test name="index" compare="eq"><int>{face.index}</int></test>'
        f'<edit name="family" mode="prepend"><string>{escape(face.family)}</string></edit>'
        "</match></fontconfig>"
    ).encode()


def font_configuration() -> FontConfiguration:
    """WeasyPrint's font configuration with the packaged fonts added, once per process.

    Registered straight from where they are installed rather than through @font-face: WeasyPrint
    copies every @font-face file into a temporary folder it removes only when the configuration is
    garbage-collected, which a prefork child leaving through os._exit never is (19 MB per child).
    Nothing is fetched: the files are read by fontconfig and FreeType, mapped, shared by children.
    """
    config = FontConfiguration()
    fc_config: Any = config._config  # WeasyPrint's fontconfig handle; add_font_face uses it the same way
    for face in packaged_faces():
        if not face.path.is_file():
            raise FileNotFoundError(f"packaged font missing: {face.path} (reinstall ticketq)")
        fontconfig.FcConfigParseAndLoadFromMemory(fc_config, alias_rule(face), True)
    for path in dict.fromkeys(face.path for face in packaged_faces()):
        if not fontconfig.FcConfigAppFontAddFile(fc_config, str(path).encode()):
            raise RuntimeError(f"fontconfig could not load {path}")
    pangoft2.pango_fc_font_map_config_changed(ffi.cast("PangoFcFontMap *", config.font_map))
    return config


def text_direction(text: object) -> str:
    """"rtl" when the first strongly directional letter is Arabic or Hebrew, else "ltr" (HTML's
    dir="auto", which WeasyPrint does not implement): an Arabic name then reads from the right."""
    for char in str(text or ""):
        kind = unicodedata.bidirectional(char)
        if kind in ("R", "AL"):
            return "rtl"
        if kind == "L":
            return "ltr"
    return "ltr"


SET_FONT = re.compile(rb"/([^\s/\[\]<>(){}%]+)\s+[-+]?[\d.]+\s+Tf\b")


def drop_unused_fonts(page: PageObject) -> None:
    """Keep in the page's resources only the fonts its text uses.

    WeasyPrint gives every page of a layout the same font dictionary, so a ticket cut from an order
    with one Chinese name would carry the CJK subset (60-100 kB) on every other attendee's ticket and
    on the invoice; pypdf copies only what a page refers to, so this leaves each PDF its own fonts.
    """
    resources = page.get("/Resources")
    resources = resources.get_object() if resources is not None else None
    fonts = resources.get("/Font") if isinstance(resources, DictionaryObject) else None
    fonts = fonts.get_object() if fonts is not None else None
    if not isinstance(resources, DictionaryObject) or not isinstance(fonts, DictionaryObject):
        return
    if resources.get("/XObject"):  # a form could set text with the page's fonts: keep them all
        return
    contents = page.get_contents()
    used = {match.decode() for match in SET_FONT.findall(contents.get_data() if contents is not None else b"")}
    own = DictionaryObject({NameObject(key): resources.raw_get(key) for key in resources})  # shared by all pages
    own[NameObject("/Font")] = DictionaryObject(
        {NameObject(name): fonts.raw_get(name) for name in fonts if name.lstrip("/") in used})
    page[NameObject("/Resources")] = own
