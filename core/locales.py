"""The languages ticketq speaks (contract section 9) and how a locale tag is read: one place for the
API's validation, the catalogs and the formatting. Babel's CLDR data decides what a tag means."""

from __future__ import annotations

from functools import lru_cache

from babel import Locale, UnknownLocaleError

# Languages with a reviewed catalog (templates/locales); English is the source, so it has none.
SUPPORTED = ("en", "de", "fr", "es", "ja", "ar")
DEFAULT = "en"
RIGHT_TO_LEFT = frozenset({"ar"})
MAX_LENGTH = 35  # BCP 47's recommended buffer size; ours are far shorter


class UnsupportedLocale(ValueError):
    """A tag that is not a supported language, or not one CLDR knows ("de-XX")."""


@lru_cache(maxsize=256)
def normalize(tag: str) -> str:
    """The canonical tag ("de-AT") for a supported language, with or without a region ("de_at" too).

    Raises UnsupportedLocale for anything else: another language, a region CLDR has no data for, a
    script or variant subtag (none of our catalogs has one)."""
    text = (tag or "").strip()
    if not text or len(text) > MAX_LENGTH or not text.replace("-", "").replace("_", "").isalnum():
        raise UnsupportedLocale(f"not a locale tag: {text[:40]!r}")
    try:
        locale = Locale.parse(text.replace("-", "_"))
    except (UnknownLocaleError, ValueError) as exc:
        raise UnsupportedLocale(f"unknown locale {text!r}") from exc
    if locale.language not in SUPPORTED or locale.script or locale.variant:
        raise UnsupportedLocale(f"unsupported locale {text!r}; supported: {', '.join(SUPPORTED)}")
    return locale.language if not locale.territory else f"{locale.language}-{locale.territory}"


def language_of(tag: str) -> str:
    """"de" for "de-AT": which catalog a tag is translated with."""
    return tag.partition("-")[0]


@lru_cache(maxsize=64)
def babel_locale(tag: str) -> Locale:
    """Babel's Locale for a canonical tag: formats dates, numbers and currencies the region's way."""
    return Locale.parse(tag.replace("-", "_"))


def direction(tag: str) -> str:
    return "rtl" if language_of(tag) in RIGHT_TO_LEFT else "ltr"
