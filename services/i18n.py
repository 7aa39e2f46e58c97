"""The gettext catalogs (templates/locales/<language>/LC_MESSAGES/messages.po, compiled to .mo by
`make catalogs`): one per supported language, read once per process."""

from __future__ import annotations

import gettext
import io
import logging
from functools import lru_cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

import templates
from core.locales import DEFAULT, SUPPORTED, language_of

log = logging.getLogger("ticketq.i18n")
CATALOGS_DIR = Path(templates.__file__).resolve().parent / "locales"
DOMAIN = "messages"


def catalog_path(language: str, suffix: str = ".po") -> Path:
    return CATALOGS_DIR / language / "LC_MESSAGES" / f"{DOMAIN}{suffix}"


def compiled(language: str) -> bytes:
    """The .po compiled as `pybabel compile` would (fuzzy entries left out)."""
    with catalog_path(language).open("rb") as source:
        catalog = read_po(source, locale=language)
    out = io.BytesIO()
    write_mo(out, catalog, use_fuzzy=False)
    return out.getvalue()


def translations(tag: str) -> gettext.NullTranslations:
    """The catalog for a locale's language ("de-AT" reads the German one); English is the source text."""
    return _catalog(language_of(tag))


@lru_cache(maxsize=len(SUPPORTED))
def _catalog(language: str) -> gettext.NullTranslations:
    """Read once per process and language: a missing or stale .mo (a checkout that skipped
    `make catalogs`) is compiled here rather than falling back to English."""
    if language == DEFAULT or language not in SUPPORTED:
        return gettext.NullTranslations()
    po, mo = catalog_path(language), catalog_path(language, ".mo")
    if mo.is_file() and mo.stat().st_mtime >= po.stat().st_mtime:
        with mo.open("rb") as fp:
            return Translations(fp, DOMAIN)
    log.warning("catalog %s is not compiled or older than its .po (make catalogs); compiling it now", language)
    return Translations(io.BytesIO(compiled(language)), DOMAIN)


@lru_cache(maxsize=len(SUPPORTED))
def page_messages(language: str) -> dict[str, str]:
    """Every translated message of a language, source text to translation, for the organizer page's
    script. Empty for English."""
    if language == DEFAULT or language not in SUPPORTED:
        return {}
    with catalog_path(language).open("rb") as source:
        catalog = read_po(source, locale=language)
    found: dict[str, str] = {}
    for message in catalog:
        if message.id and message.string and not message.fuzzy and isinstance(message.id, str):
            found[message.id] = str(message.string)
    return found
