"""What an invoice or credit note shows: the seller, the buyer, lines with net, tax and gross, totals
per rate and the payment status. Texts stay in the templates (so they can be translated); this
gives them formatted values, and the exact amounts the e-invoice XML repeats (services/einvoice.py)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from babel.core import get_global

from core.locales import babel_locale
from core.settings import settings
from models.events import Event, Role
from models.invoices import Invoice, InvoiceKind, order_totals, priced_lines
from models.orders import Order
from models.status import OrderStatus
from models.taxes import Totals
from services.formats import long_date, money, percent

# VAT ID prefixes that are not the country's ISO code (Greece files VAT as EL).
VAT_PREFIX_COUNTRY = {"EL": "GR", "XI": "GB"}


def owner_of(event: Event) -> tuple[str, str]:
    """The event owner's name and address: the seller when the event names none. An owner without a
    name is shown by the event's name, so the address is not printed twice."""
    owner = next((r.user for r in event.roles if r.role is Role.OWNER), None)
    if owner is None:
        return event.name, ""
    return owner.name or event.name, owner.email


def seller_country(event: Event) -> str:
    """The seller's country: as given, else the VAT ID's prefix, else the country of the event's timezone."""
    if event.seller_country:
        return event.seller_country
    if event.seller_vat_id:
        prefix = event.seller_vat_id[:2].upper()
        return VAT_PREFIX_COUNTRY.get(prefix, prefix)
    return str(get_global("zone_territories").get(event.timezone, ""))


def seller_of(event: Event, locale: str) -> dict[str, Any]:
    owner_name, owner_email = owner_of(event)
    country = seller_country(event)
    return {
        "name": event.seller_name or owner_name,
        "address": (event.seller_address or "").splitlines(),
        "country": country,
        "country_name": babel_locale(locale).territories.get(country, country),
        "vat_id": event.seller_vat_id or "",
        "email": event.contact_email or owner_email,
        "event": event.name,
    }


def tax_category(event: Event, rate: Decimal) -> str:
    """EN 16931 VAT category: S standard rate; E exempt (a VAT-registered seller at 0 %); O not subject."""
    if rate > 0:
        return "S"
    return "E" if event.seller_vat_id else "O"


def payment_state(order: Order, issued: date) -> tuple[str, date | None]:
    """paid, due (with the date: bank and cheque), entrance (onsite), or open (anything else unpaid)."""
    if order.completed_at is not None:
        return "paid", None
    if order.payment_mode in ("bank", "cheque"):
        event_day = order.event.starts_at.astimezone(ZoneInfo(order.event.timezone)).date()
        return "due", max(issued, min(issued + timedelta(days=settings.invoice_payment_days), event_day))
    if order.payment_mode == "onsite":
        return "entrance", None
    return "open", None


def _amounts(totals: Totals, currency: str, locale: str) -> dict[str, Any]:
    """Each amount twice: formatted for people, and as the plain decimal string the XML carries."""
    def pair(value: Decimal) -> dict[str, str]:
        return {"text": money(value, currency, locale), "value": f"{value:.2f}"}

    def rate(value: Decimal) -> dict[str, str]:
        return {"text": percent(value, locale), "value": f"{value:.2f}"}

    return {
        "lines": [{"name": line.name, "quantity": line.quantity, "unit": pair(line.unit_price),
                   "unit_net": f"{line.unit_net}", "rate": rate(line.rate), "net": pair(line.net),
                   "tax": pair(line.tax), "gross": pair(line.gross)} for line in totals.lines],
        "rates": [{"rate": rate(r.rate), "net": pair(r.net), "tax": pair(r.tax), "gross": pair(r.gross)}
                  for r in totals.rates],
        "net": pair(totals.net), "tax": pair(totals.tax), "gross": pair(totals.gross),
    }


def issue_day(invoice: Invoice, event: Event) -> date:
    return invoice.issued_at.astimezone(ZoneInfo(event.timezone)).date()


def invoice_context(order: Order, invoice: Invoice, buyer: dict[str, str], locale: str) -> dict[str, Any]:
    """One invoice or credit note as its PDF and XML show it."""
    event = order.event
    issued = issue_day(invoice, event)
    totals = order_totals(event, priced_lines(order))
    state, due = payment_state(order, issued)
    original = next((i for i in order.invoices if i.id == invoice.cites_id), None)  # the same order's
    return {
        "kind": invoice.kind.value,
        "type_code": "381" if invoice.kind is InvoiceKind.CREDIT_NOTE else "380",
        "number": invoice.number,
        "date": long_date(issued, locale),
        "iso_date": issued.isoformat(),
        "cites": None if original is None else {
            "number": original.number, "date": long_date(issue_day(original, event), locale),
            "iso_date": issue_day(original, event).isoformat()},
        "seller": seller_of(event, locale),
        "buyer": buyer,
        "order": order.identifier,
        # The date the service is delivered (EN 16931 BT-72): the day the event starts.
        "iso_event_date": event.starts_at.astimezone(ZoneInfo(event.timezone)).date().isoformat(),
        "event_date": long_date(event.starts_at.astimezone(ZoneInfo(event.timezone)).date(), locale),
        "paid_date": long_date(order.completed_at.astimezone(ZoneInfo(event.timezone)).date(), locale)
        if order.completed_at else "",
        "order_code": order.identifier[:8].upper(),
        "currency": order.currency,
        "prices_include_tax": event.prices_include_tax,
        "category": tax_category(event, event.tax_rate),
        **_amounts(totals, order.currency, locale),
        "payment_mode": order.payment_mode or "",
        "state": state,
        "refund": invoice.kind is InvoiceKind.CREDIT_NOTE and order.completed_at is not None,
        "cancelled": order.status is OrderStatus.CANCELLED,
        "due_date": long_date(due, locale) if due else "",
        "iso_due_date": due.isoformat() if due else "",
        "bank_details": (event.bank_details or "").splitlines(),
        "cheque_details": (event.cheque_details or "").splitlines(),
    }


def invoices_context(order: Order, buyer: dict[str, str], locale: str) -> dict[str, Any]:
    """The order's issued documents by kind: {"invoice": …, "credit_note": …}, None where not issued."""
    found: dict[str, Any] = {"invoice": None, "credit_note": None}
    for invoice in order.invoices:
        found[invoice.kind.value.replace("-", "_")] = invoice_context(order, invoice, buyer, locale)
    return found
