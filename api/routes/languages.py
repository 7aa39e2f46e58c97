"""GET /v1/locales: the languages ticketq writes in (contract section 9), and each one's messages
for the organizer page's script. Unauthenticated: nothing here is anyone's data."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel

from core.locales import SUPPORTED, babel_locale, direction
from models.errors import NotFound
from services.i18n import page_messages

router = APIRouter(prefix="/v1/locales", tags=["locales"])


class LocaleOut(BaseModel):
    tag: str
    name: str  # in its own language: what a language menu shows
    english_name: str
    direction: str


class LocaleList(BaseModel):
    default: str
    locales: list[LocaleOut]


class LocaleMessages(BaseModel):
    tag: str
    direction: str
    messages: dict[str, str]


@router.get("", response_model=LocaleList)
def list_locales() -> LocaleList:
    """The supported languages; a regional tag of any of them ("de-AT", "fr-CA") is accepted too."""
    return LocaleList(default=SUPPORTED[0], locales=[
        LocaleOut(tag=tag, name=str(babel_locale(tag).get_display_name(babel_locale(tag))),
                  english_name=str(babel_locale(tag).english_name), direction=direction(tag))
        for tag in SUPPORTED])


@router.get("/{tag}/messages", response_model=LocaleMessages, responses={404: {"description": "Not supported"}})
def messages(tag: Annotated[str, Path(max_length=35)]) -> LocaleMessages:
    """The page texts of one language: English source text to translation (empty for English)."""
    language = tag.partition("-")[0].lower()
    if language not in SUPPORTED:
        raise NotFound(f"Unsupported locale {tag[:35]!r}", pointer="/tag")
    return LocaleMessages(tag=language, direction=direction(language), messages=page_messages(language))
