"""The catalogs: every message extracted from the templates, services and page scripts is translated
in every supported language, none is fuzzy, and each translation keeps its source's placeholders."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from core.locales import DEFAULT, SUPPORTED
from services.i18n import catalog_path

ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "t": None}
TRANSLATED = [language for language in SUPPORTED if language != DEFAULT]


def extracted() -> set[str]:
    """What `make messages` would extract now: a text added to a template without a translation fails below."""
    with (ROOT / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    return {message[2] if isinstance(message[2], str) else message[2][0]
            for message in extract_from_dir(str(ROOT), method_map, options_map, keywords=KEYWORDS)}


def catalog(language: str):  # type: ignore[no-untyped-def]
    with catalog_path(language).open("rb") as source:
        return read_po(source, locale=language)


def placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_extracted_message_is_in_the_catalog(language: str) -> None:
    ids = {m.id if isinstance(m.id, str) else m.id[0] for m in catalog(language) if m.id}
    missing = extracted() - ids
    assert not missing, f"{language}: run `make messages` and translate: {sorted(missing)[:5]}"


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_message_is_translated_and_none_is_fuzzy(language: str) -> None:
    problems = []
    for message in catalog(language):
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.fuzzy or not all(strings):
            problems.append(message.id)
    assert not problems, f"{language}: untranslated or fuzzy: {problems[:5]}"


@pytest.mark.parametrize("language", TRANSLATED)
def test_translations_keep_their_placeholders(language: str) -> None:
    """A singular may leave out the count; every other placeholder of the source must be there, and
    no translation may invent one (a KeyError in a customer's email)."""
    problems = []
    for message in catalog(language):
        if not message.id:
            continue
        sources = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        allowed = set().union(*(placeholders(s) for s in sources))
        required = placeholders(sources[-1]) - {"num"}
        for text in strings:
            found = placeholders(text)
            if not text or found - allowed or (required - found):
                problems.append((message.id, text))
    assert not problems, f"{language}: placeholders differ: {problems[:3]}"
