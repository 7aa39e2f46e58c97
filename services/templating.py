"""The Jinja2 environment the emails and PDFs are written in: autoescaped, strict, with the
gettext extension bound to one language's catalog (one environment per language, built once)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jinja2
import segno
from markupsafe import Markup

import templates
from core.locales import SUPPORTED, language_of
from services.fonts import text_direction
from services.i18n import translations

TEMPLATES_DIR = Path(templates.__file__).resolve().parent


def qr_svg(secret: str) -> Markup:
    """The QR code as inline SVG: segno's own markup, so nothing needs fetching. A viewBox instead of
    a fixed size, so the stylesheet decides how large it prints (templates/pdf/ticket.css)."""
    return Markup(segno.make(secret, error="m").svg_inline(border=2, omitsize=True))  # noqa: S704


def environment(tag: str) -> jinja2.Environment:
    """Templates in the language of `tag`: "de-AT" shares the German environment (its regional
    formats come with the values, formatted in services/formats.py)."""
    return _environment(language_of(tag))


@lru_cache(maxsize=len(SUPPORTED))
def _environment(language: str) -> jinja2.Environment:
    """Built and its templates compiled once per process and language."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
        extensions=["jinja2.ext.i18n"],
    )
    # newstyle: `_("Hello %(name)s", name=…)` escapes its values and fails loudly on a missing one.
    env.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]
    env.filters["qr"] = qr_svg
    env.filters["dir"] = text_direction
    return env
