"""The invoice PDF as an e-invoice: a PDF/A-3b layout by WeasyPrint with its EN 16931 data embedded
as Factur-X XML, both built and checked by the factur-x library (XSD; the schematron needs a Saxon
server, so it is not run here). The XML's amounts are the very strings the PDF prints beside."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import facturx
from stdnum import iban
from weasyprint import CSS

from core.locales import DEFAULT, direction
from core.metrics import rendering
from core.tracing import span
from models.deliveries import DocumentKind
from services.i18n import translations
from services.rendering import collector_paused, render_html, stylesheet
from services.storage import DocumentKey
from services.templating import environment

log = logging.getLogger("ticketq.einvoice")
logging.getLogger("factur-x").setLevel(logging.WARNING)  # it logs every step at INFO

LEVEL = "en16931"
EXEMPTION = {"E": "Exempt from VAT", "O": "Not subject to VAT"}
# UNTDID 4461 payment means: credit transfer, SEPA credit transfer, cheque, cash, card, not defined.
MEANS = {"bank": "30", "cheque": "20", "onsite": "10", "card": "48", "stripe": "48"}
KINDS = {"invoice": DocumentKind.INVOICE, "credit-note": DocumentKind.CREDIT_NOTE}


def find_iban(lines: list[str]) -> str | None:
    """The first valid IBAN in the payment instructions, spaces and all, checked by python-stdnum."""
    for line in lines:
        words = line.replace(":", " ").split()
        for start in range(len(words)):
            for end in range(min(len(words), start + 9), start, -1):  # an IBAN is at most 9 groups
                candidate = "".join(words[start:end])
                if 15 <= len(candidate) <= 34 and iban.is_valid(candidate):
                    return str(iban.compact(candidate))
    return None


def _party(person: Mapping[str, Any], country: str, *, seller: bool) -> dict[str, Any]:
    party: dict[str, Any] = {"name": person["name"], "country_code": country}
    if seller:
        for key, line in zip(("addr_l1", "addr_l2", "addr_l3"), person["address"], strict=False):
            party[key] = line
        if person["vat_id"]:
            party["vat_identifier"] = person["vat_id"]
    if person.get("email"):
        party["contacts"] = [{"email": person["email"]}]
    return party


def _payment(doc: Mapping[str, Any]) -> dict[str, Any]:
    mode = doc["payment_mode"]
    fields: dict[str, Any] = {"BT-81": MEANS.get(mode, "1" if mode != "free" else "ZZZ")}
    account = find_iban(doc["bank_details"]) if mode == "bank" else None
    if account:
        fields.update({"BT-81": "58", "BT-84": account, "BT-83": doc["number"]})
    elif mode == "bank":
        fields["BT-81"] = "1"  # a credit transfer (30, 58) must name the account: EN 16931 BR-61
    if doc["iso_due_date"]:
        fields["BT-9"] = doc["iso_due_date"]
    return fields


def facturx_data(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The factur-x library's data dictionary (keys are EN 16931 business terms) for one document."""
    category = doc["category"]
    exemption = {"BT-120": EXEMPTION[category]} if category in EXEMPTION else {}
    seller = doc["seller"]
    paid = doc["state"] == "paid" and doc["kind"] == "invoice"
    gross = doc["gross"]["value"]
    data: dict[str, Any] = {
        "BT-1": doc["number"], "BT-2": doc["iso_date"], "BT-3": doc["type_code"], "BT-5": doc["currency"],
        "BT-13": doc["order_code"], "BT-72": doc["iso_event_date"],
        # The buyer's address is not asked for: the place of supply of admission is the event's, the seller's country.
        "BG-4": _party(seller, seller["country"], seller=True),
        "BG-7": _party(doc["buyer"], seller["country"], seller=False),
        "BG-25": [{"BT-126": str(n), "BT-129": str(line["quantity"]), "BT-130": "C62",
                   "BT-131": line["net"]["value"], "BT-146": line["unit_net"], "BT-151": category,
                   "BT-152": line["rate"]["value"], "BT-153": f"{seller['event']} — {line['name']}"}
                  for n, line in enumerate(doc["lines"], start=1)],
        "BG-23": [{"BT-116": r["net"]["value"], "BT-117": r["tax"]["value"], "BT-118": category,
                   "BT-119": r["rate"]["value"], **exemption} for r in doc["rates"]],
        "BT-106": doc["net"]["value"], "BT-109": doc["net"]["value"], "BT-110": doc["tax"]["value"],
        "BT-112": gross, "BT-113": gross if paid else "0.00", "BT-115": "0.00" if paid else gross,
        **(_payment(doc) if doc["kind"] == "invoice" else {}),
    }
    if doc["cites"]:
        data["BG-3"] = [{"BT-25": doc["cites"]["number"], "BT-26": doc["cites"]["iso_date"]}]
    return data


def facturx_xml(doc: Mapping[str, Any]) -> bytes:
    return bytes(facturx.generate_cii_xml(facturx_data(doc), level=LEVEL, check_xsd=False, check_schematron=False))


@lru_cache(maxsize=1)
def invoice_stylesheet() -> CSS:
    return stylesheet("invoice.css")


def render_invoice(context: Mapping[str, Any], doc: Mapping[str, Any]) -> bytes:
    """The PDF/A-3b of one invoice or credit note with its Factur-X XML, checked against the XSD."""
    locale = context.get("locale", DEFAULT)  # a context built without one is English
    with span("render invoice", {"ticketq.order": str(doc["order"]), "ticketq.document.kind": str(doc["kind"])}):
        html = environment(locale).get_template("pdf/invoice.html").render(
            **{**context, "locale": locale, "dir": direction(locale), "invoice": doc})
        with collector_paused():
            pdf, _ = render_html(html, variant="pdf/a-3b", stylesheets=[invoice_stylesheet()])
        _ = translations(locale).gettext
        values = {"number": doc["number"], "date": doc["date"], "event": doc["seller"]["event"],
                  "order": doc["order_code"]}
        title = (_("Credit note %(number)s") if doc["kind"] == "credit-note" else _("Invoice %(number)s")) % values
        metadata = {"author": doc["seller"]["name"], "keywords": "Factur-X, EN 16931, invoice", "title": title,
                    "subject": _("%(title)s of %(date)s, %(event)s, order %(order)s") % {**values, "title": title}}
        return bytes(facturx.generate_from_binary(pdf, facturx_xml(doc), flavor="factur-x", level=LEVEL,
                                                  check_xsd=True, pdf_metadata=metadata, lang=locale))


def render_invoices(context: Mapping[str, Any]) -> dict[DocumentKey, bytes]:
    """Every invoice document the order has been issued (none for a free order, by default)."""
    found: dict[DocumentKey, bytes] = {}
    for key in ("invoice", "credit_note"):
        doc = context.get(key)
        if doc:
            with rendering(KINDS[doc["kind"]].value):  # timed per document kind (README "Metrics")
                found[(KINDS[doc["kind"]], None)] = render_invoice(context, doc)
    return found


def _pair(value: str) -> dict[str, str]:
    return {"text": f"€{value}", "value": value}


# An invoice as services/invoicing.py describes one: for the warm-up and for tests of the layout alone.
SAMPLE_INVOICE: dict[str, Any] = {
    "kind": "invoice", "type_code": "380", "number": "INV-2029-000001", "date": "January 1, 2029",
    "iso_date": "2029-01-01", "cites": None, "order": "0" * 32, "order_code": "00000000",
    "seller": {"name": "ticketq", "address": ["Musterstraße 1", "10115 Berlin"], "country": "DE",
               "country_name": "Germany", "vat_id": "DE136695976", "email": "tickets@example.org", "event": "Warm-up"},
    "buyer": {"name": "Ada Lovelace", "email": "ada@example.org"},
    "iso_event_date": "2029-01-01", "event_date": "January 1, 2029", "paid_date": "January 1, 2029",
    "currency": "EUR", "prices_include_tax": True, "category": "S",
    "lines": [{"name": "Standard", "quantity": 1, "unit": _pair("11.90"), "unit_net": "10.0000",
               "rate": {"text": "19 %", "value": "19.00"}, "net": _pair("10.00"), "tax": _pair("1.90"),
               "gross": _pair("11.90")}],
    "rates": [{"rate": {"text": "19 %", "value": "19.00"}, "net": _pair("10.00"), "tax": _pair("1.90"),
               "gross": _pair("11.90")}],
    "net": _pair("10.00"), "tax": _pair("1.90"), "gross": _pair("11.90"),
    "payment_mode": "bank", "state": "paid", "refund": False, "cancelled": False, "due_date": "", "iso_due_date": "",
    "bank_details": [], "cheque_details": [],
}


def warm_up() -> None:
    """One invoice once per process: the PDF/A layout, the XML builder and its XSD are then loaded."""
    render_invoice({}, SAMPLE_INVOICE)
