"""Dates, times, amounts and numbers as CLDR writes them for a locale (Babel), in the event's own
timezone: what "Monday 1 January" or "25,00 €" looks like is the locale's business, not ours."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_time, get_timezone_gmt, get_timezone_name
from babel.numbers import format_currency, format_decimal, format_percent

from core.locales import babel_locale
from models.events import Event


def money(amount: Decimal, currency: str, locale: str) -> str:
    return str(format_currency(amount, currency, locale=babel_locale(locale)))


def number(value: int | Decimal, locale: str) -> str:
    return str(format_decimal(value, locale=babel_locale(locale)))


def percent(rate: Decimal, locale: str) -> str:
    """A rate given in percent ("7.7") as the locale writes it: "7.7%", "7,7 %"."""
    return str(format_percent(rate / 100, locale=babel_locale(locale), decimal_quantization=False))


def long_date(day: date, locale: str) -> str:
    return str(format_date(day, format="long", locale=babel_locale(locale)))


def zone_name(moment: datetime, locale: str) -> str:
    """The zone's name at that moment as the locale abbreviates it ("EDT", "MESZ"), else its offset
    in the locale's words ("GMT+04:00", "UTC+04:00"), never a bare "+0400"."""
    name = str(get_timezone_name(moment, "short", locale=babel_locale(locale)))
    return name if name[:1] not in "+-" else str(get_timezone_gmt(moment, "long", locale=babel_locale(locale)))


def date_and_time(day: str, time: str, locale: str) -> str:
    """CLDR's way of joining a date and a time ("{1}, {0}"; Japanese "{1} {0}")."""
    pattern = str(babel_locale(locale).datetime_formats["medium"]).replace("'", "")
    return pattern.replace("{1}", day).replace("{0}", time)


def event_times(event: Event, locale: str) -> dict[str, str]:
    """Start and end in the event's own timezone, with the zone named: attendees read the local clock."""
    where = babel_locale(locale)
    zone = ZoneInfo(event.timezone)
    start, end = event.starts_at.astimezone(zone), event.ends_at.astimezone(zone)
    start_zone, end_zone = zone_name(start, locale), zone_name(end, locale)
    start_time, end_time = format_time(start, "short", locale=where), format_time(end, "short", locale=where)
    day = str(format_date(start, "full", locale=where))
    if start.date() == end.date():
        # A night that crosses a clock change names both zones ("01:30 CEST – 04:00 CET").
        span = (f"{start_time} – {end_time} {end_zone}" if start_zone == end_zone
                else f"{start_time} {start_zone} – {end_time} {end_zone}")
    else:
        span = f"{start_time} {start_zone} – " + date_and_time(
            str(format_date(end, "full", locale=where)), f"{end_time} {end_zone}", locale)
    return {
        "date": day,
        "time": span,
        "when": f"{date_and_time(day, span, locale)} ({event.timezone})",
        "timezone": event.timezone,
    }
