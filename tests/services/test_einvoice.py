"""The invoice PDF is a PDF/A-3 Factur-X e-invoice whose XML says what the page prints."""

from __future__ import annotations

import io
from decimal import Decimal

import facturx
import pytest
from lxml import etree
from pypdf import PdfReader
from sqlalchemy.orm import Session

from models import Order
from models.invoices import issue_owed
from models.status import OrderStatus
from models.transitions import change_status
from services.einvoice import find_iban, render_invoices
from services.presenters import load_full_order, order_context
from tests.factories import make_event, make_user
from tests.models.test_invoices import submitted

NS = {"ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
      "rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"}
BANK = "PyCon Deutschland e.V.\nIBAN: DE89 3704 0044 0532 0130 00\nBIC COBADEFFXXX"


def text_of(pdf: bytes) -> str:
    return " ".join(" ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages).split())


def xml_of(pdf: bytes) -> etree._Element:
    name, xml = facturx.get_xml_from_pdf(pdf, check_xsd=True)  # the library's own check, against the XSD
    assert name == "factur-x.xml"
    return etree.fromstring(xml)


def one(tree: etree._Element, path: str) -> str:
    (found,) = tree.xpath(path, namespaces=NS)
    return str(found.text)


def rendered(session: Session, *, vat_id: str | None = "DE136695976", rate: str = "19", mode: str = "bank",
             cancel: bool = False) -> tuple[dict[str, object], dict[object, bytes]]:
    owner = make_user(session, "olga@example.org")
    event = make_event(session, owner=owner, tickets=(("Conference", "120.00", 10), ("Workshop", "45.50", 10)))
    event.seller_name, event.seller_address, event.seller_vat_id = "PyCon e.V.", "Musterstraße 12\n10115 Berlin", vat_id
    event.tax_rate, event.bank_details, event.contact_email = Decimal(rate), BANK, "tickets@pycon.example"
    order = submitted(session, event, mode, quantity=2)
    if cancel:
        change_status(session, order, OrderStatus.COMPLETED, by=owner.email)
        issue_owed(session, order)
        change_status(session, order, OrderStatus.CANCELLED, by=owner.email)
    issue_owed(session, order)
    session.flush()
    full = load_full_order(session, Order.id == order.id)
    session.refresh(full, ["invoices"])
    context = order_context(full)
    return context, render_invoices(context)


def test_a_bank_transfer_invoice_is_factur_x_and_its_xml_totals_are_the_printed_ones(session: Session) -> None:
    context, documents = rendered(session)
    (pdf,) = documents.values()
    reader = PdfReader(io.BytesIO(pdf))
    assert "/OutputIntents" in reader.trailer["/Root"]  # PDF/A: the colour space is declared
    assert b"<pdfaid:part>3</pdfaid:part>" in reader.trailer["/Root"]["/Metadata"].get_object().get_data()
    assert reader.metadata is not None and reader.metadata.title == f"Invoice {context['invoice']['number']}"
    tree, text = xml_of(pdf), text_of(pdf)
    invoice = context["invoice"]
    assert one(tree, "//rsm:ExchangedDocument/ram:ID") == invoice["number"] and invoice["number"] in text
    assert one(tree, "//rsm:ExchangedDocument/ram:TypeCode") == "380"
    totals = "//ram:SpecifiedTradeSettlementHeaderMonetarySummation/"
    assert one(tree, totals + "ram:GrandTotalAmount") == "240.00" and "Total (EUR) €240.00" in text
    assert one(tree, totals + "ram:TaxBasisTotalAmount") == "201.68" and "Net at 19% €201.68" in text
    assert one(tree, totals + "ram:TaxTotalAmount") == "38.32" and "Tax at 19% €38.32" in text
    assert one(tree, totals + "ram:DuePayableAmount") == "240.00"
    assert one(tree, "//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax/ram:CategoryCode") == "S"
    assert one(tree, "//ram:PayeePartyCreditorFinancialAccount/ram:IBANID") == "DE89370400440532013000"
    assert one(tree, "//ram:SellerTradeParty/ram:SpecifiedTaxRegistration/ram:ID") == "DE136695976"
    assert "Payment due by" in text and "IBAN: DE89 3704 0044 0532 0130 00" in text
    for printed in ("PyCon e.V.", "Musterstraße 12", "VAT ID DE136695976", "Bank transfer", "19%", "Ada"):
        assert printed in text


def test_a_credit_note_cites_the_invoice_it_cancels(session: Session) -> None:
    context, documents = rendered(session, cancel=True)
    assert len(documents) == 2
    credit = next(pdf for pdf in documents.values() if "Credit note" in text_of(pdf))
    tree, text = xml_of(credit), text_of(credit)
    original = context["invoice"]["number"]
    assert one(tree, "//rsm:ExchangedDocument/ram:TypeCode") == "381"
    assert one(tree, "//ram:InvoiceReferencedDocument/ram:IssuerAssignedID") == original
    assert f"This credit note cancels invoice {original}" in text and "refunded" in text
    paid = next(pdf for pdf in documents.values() if pdf is not credit)
    assert "Paid" in text_of(paid) and one(xml_of(paid), "//ram:DuePayableAmount") == "0.00"


@pytest.mark.parametrize(("vat_id", "category", "note"), [(None, "O", "Not subject to VAT."),
                                                          ("DE136695976", "E", "Exempt from VAT.")])
def test_an_untaxed_seller_says_why(session: Session, vat_id: str | None, category: str, note: str) -> None:
    _, documents = rendered(session, vat_id=vat_id, rate="0", mode="onsite")
    (pdf,) = documents.values()
    tree, text = xml_of(pdf), text_of(pdf)
    assert one(tree, "//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax/ram:CategoryCode") == category
    assert note in text and "Payable at the entrance" in text
    assert one(tree, "//ram:SpecifiedTradeSettlementHeaderMonetarySummation/ram:GrandTotalAmount") == "240.00"


def test_an_iban_is_found_in_free_text_and_checked() -> None:
    assert find_iban(["Bank: Example", "IBAN DE89 3704 0044 0532 0130 00 (BIC X)"]) == "DE89370400440532013000"
    assert find_iban(["IBAN DE89 3704 0044 0532 0130 01"]) is None  # a wrong check digit is no IBAN


def test_hostile_names_on_an_invoice_print_as_text_and_fetch_nothing() -> None:
    from services.einvoice import SAMPLE_INVOICE, render_invoice
    from tests.services.hostile import counting_server, hostile_names

    with counting_server() as server:
        names = hostile_names(server.url)
        seller = {**SAMPLE_INVOICE["seller"], "name": names[1], "address": names[2:4], "event": names[0]}
        pdf = render_invoice({}, {**SAMPLE_INVOICE, "seller": seller, "buyer": {"name": names[0], "email": "a@b.org"}})
        assert server.paths == []
    text = text_of(pdf).replace(" ", "")
    for name in names[:4]:
        assert "".join(name.split()) in text
    assert xml_of(pdf) is not None  # the XML escaped them too, and still validates
