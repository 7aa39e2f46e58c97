"""Field rules of request bodies that need more than a pattern: ISO 4217 currencies, and event times
read in the event's timezone."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta
from functools import cache

import pycountry
from pydantic import ValidationInfo
from pydantic_core import PydanticCustomError

from core.locales import SUPPORTED, UnsupportedLocale, normalize


@cache
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def iana_timezone(value: str) -> str:
    if value not in _timezones():
        raise PydanticCustomError("timezone", "Unknown IANA timezone (e.g. Europe/Berlin)")
    return value


def iso_4217(value: str) -> str:
    """pycountry carries ISO 4217's list of current currencies (Debian's iso-codes)."""
    if pycountry.currencies.get(alpha_3=value) is None:
        raise PydanticCustomError("currency", "Unknown currency: use an ISO 4217 code such as EUR or USD")
    return value


def supported_locale(value: str) -> str:
    """A supported language, alone or with a region ("de-AT"), in its canonical form."""
    try:
        return normalize(value)
    except UnsupportedLocale:
        raise PydanticCustomError(
            "locale", "Unsupported locale '{locale}': use one of {supported}, alone or with a region (de-AT)",
            {"locale": value[:40], "supported": ", ".join(SUPPORTED)}) from None


def sane_year(value: datetime) -> datetime:
    if not 1970 <= value.year <= 9000:
        raise PydanticCustomError("year", "Year must be between 1970 and 9000")
    return value


def in_event_timezone(value: datetime, info: ValidationInfo) -> datetime:
    """A time without offset is a wall-clock time in the body's `timezone`; one with an offset must
    be that zone's offset at that instant, or UTC (an unambiguous instant, as the demo sends)."""
    name = info.data.get("timezone")
    if name is None:  # the timezone itself was refused; that error says enough
        return value
    zone = zoneinfo.ZoneInfo(name)
    if value.tzinfo is None:
        local = value.replace(tzinfo=zone)
        if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != value:  # a spring-forward gap
            raise PydanticCustomError("local_time", "{time} does not exist in {zone} (the clocks change then)",
                                      {"time": value.isoformat(), "zone": name})
        return local
    offset = value.utcoffset()
    if offset != timedelta(0) and offset != value.astimezone(zone).utcoffset():
        raise PydanticCustomError(
            "offset", "The offset {offset} is not {zone}'s at that time: send the local time without an "
            "offset, or the right offset", {"offset": value.isoformat(timespec="seconds")[19:], "zone": name})
    return value


def not_in_past(value: datetime) -> datetime:
    if value.tzinfo is not None and value < datetime.now(UTC):
        raise PydanticCustomError("past", "An event cannot end in the past")
    return value
