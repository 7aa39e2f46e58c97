"""event.ics: the event as one iCalendar entry in its own timezone, built and written by icalendar."""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from zoneinfo import ZoneInfo

import icalendar

from core.locales import DEFAULT
from models.base import utcnow
from models.orders import Order
from services.i18n import translations

PRODID = "-//ticketq//tickets//EN"


@lru_cache(maxsize=64)
def vtimezone(tzid: str, first_year: int, last_year: int) -> icalendar.Timezone:
    """The zone's transitions over the event's years, built once per process: icalendar's default
    table (1970-2038) is large and slow to build for every email. Shared: never modify it."""
    zone = icalendar.Timezone.from_tzid(tzid, first_date=date(first_year, 1, 1), last_date=date(last_year + 1, 1, 1))
    # icalendar notes the span it covers ("This timezone only works from …"): calendar apps show it as
    # if it were ours. The span itself is all an entry within those years needs.
    zone.pop("COMMENT", None)
    return zone


def event_calendar(order: Order) -> icalendar.Calendar:
    """The calendar with the zone's VTIMEZONE and the event; the UID is stable per order, so a
    resent confirmation updates the entry a calendar already has instead of adding a second one."""
    event = order.event
    zone = ZoneInfo(event.timezone)
    calendar = icalendar.Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("method", "PUBLISH")
    calendar.add_component(vtimezone(event.timezone, event.starts_at.year, event.ends_at.year))
    entry = icalendar.Event()
    entry.add("uid", f"{order.identifier}@ticketq")
    entry.add("dtstamp", utcnow())
    entry.add("dtstart", event.starts_at.astimezone(zone))
    entry.add("dtend", event.ends_at.astimezone(zone))
    entry.add("summary", event.name)
    if event.location:
        entry.add("location", event.location)
    # The code the emails and tickets quote, in the buyer's language.
    code = order.identifier[:8].upper()
    description = translations(order.locale or DEFAULT).gettext("Order %(code)s") % {"code": code}
    entry.add("description", description)
    calendar.add_component(entry)
    return calendar


def event_ics(order: Order) -> bytes:
    """event.ics as attached to the confirmations (CRLF line ends, lines folded at 75 octets)."""
    return bytes(event_calendar(order).to_ical())
