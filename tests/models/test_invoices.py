"""Invoice numbers: gapless and unique per seller and year, issued once per order, even when jobs race;
and the tax math the invoices print."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from core.settings import settings
from models import Event, Invoice, InvoiceKind, Order
from models.invoices import issue_owed, next_number
from models.placing import Person, submit_order
from models.status import OrderStatus
from models.taxes import Item, compute
from models.transitions import change_status
from tests.factories import make_event, make_order, make_user
from tests.models.test_concurrency import pooled

D = Decimal


@pytest.mark.parametrize("prices", [("25.00", 3), ("0.99", 7), ("19.99", 1), ("1234.56", 11), ("0.01", 1)])
def test_gross_prices_split_into_net_and_tax_that_add_up_to_what_was_charged(prices: tuple[str, int]) -> None:
    price, quantity = D(prices[0]), prices[1]
    totals = compute([Item("Ticket", quantity, price, D("19")), Item("Workshop", 1, D("10.00"), D("7"))],
                     prices_include_tax=True)
    assert totals.gross == price * quantity + D("10.00")
    assert totals.net + totals.tax == totals.gross
    assert [r.rate for r in totals.rates] == [D("7"), D("19")]  # one total per rate
    for rate in totals.rates:
        # EN 16931 BR-CO-17: the rate's tax is its net times the rate, within the cent its rounding allows
        assert abs(rate.tax - (rate.net * rate.rate / 100).quantize(D("0.01"))) <= D("0.01")
        assert rate.net + rate.tax == rate.gross
    assert [line.name for line in totals.lines] == ["Ticket", "Workshop"]  # in the order sold


def test_net_prices_get_the_tax_of_each_rate_on_top() -> None:
    totals = compute([Item("A", 3, D("0.33"), D("19")), Item("B", 3, D("0.33"), D("19"))], prices_include_tax=False)
    assert totals.net == D("1.98") and totals.tax == D("0.38") and totals.gross == D("2.36")  # 1.98 × 19 % = 0.3762
    assert sum(line.tax for line in totals.lines) == totals.tax  # the rounding difference sits on one line


def test_an_order_with_net_prices_charges_the_tax(session: Session) -> None:
    event = make_event(session, tickets=(("Standard", "100.00", 10),))
    event.tax_rate, event.prices_include_tax = D("19"), False
    order = make_order(session, event, make_user(session), quantity=2)
    assert order.amount == D("238.00")


def submitted(session: Session, event: Event, mode: str = "bank", quantity: int = 1) -> Order:
    buyer = make_user(session)
    order = make_order(session, event, buyer, quantity=quantity)
    submit_order(session, order, payment_mode=mode, buyer=Person("Ada", buyer.email),
                 attendees=[Person(f"Guest {n}", buyer.email) for n in range(quantity)], by=buyer.email)
    return order


def test_numbers_run_per_seller_and_year_and_an_order_gets_one(any_db: sessionmaker[Session]) -> None:
    with any_db() as session, session.begin():
        olga, omar = make_user(session, "olga@example.org"), make_user(session, "omar@example.org")
        first, second = make_event(session, owner=olga, name="One"), make_event(session, owner=olga, name="Two")
        other = make_event(session, owner=omar, name="Elsewhere")
        orders = [submitted(session, e) for e in (first, second, other, first)]
        numbers = [issue_owed(session, o)[0].number for o in orders]
        year = datetime.now(UTC).year
        assert numbers == [f"INV-{year}-000001", f"INV-{year}-000002", f"INV-{year}-000001", f"INV-{year}-000003"]
        assert [i.number for i in issue_owed(session, orders[0])] == [numbers[0]]  # asked again: the same one
        assert next_number(session, f"user:{olga.id}", year + 1) == 1  # a new year starts again at 1


def test_a_number_taken_in_a_rolled_back_transaction_is_given_back(db: sessionmaker[Session]) -> None:
    with db() as session, session.begin():
        event = make_event(session, owner=make_user(session, "olga@example.org"))
        ids = [submitted(session, event).id for _ in range(2)]
    with db() as session:
        issue_owed(session, session.get_one(Order, ids[0]))
        session.rollback()  # the job failed after numbering: nothing of it stays
    with db() as session, session.begin():
        for order_id in ids:
            issue_owed(session, session.get_one(Order, order_id))
    with db() as session:
        assert list(session.scalars(sa.select(Invoice.sequence).order_by(Invoice.id))) == [1, 2]


def test_free_orders_get_no_invoice_unless_zero_invoices_are_asked_for(session: Session,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    event = make_event(session, owner=make_user(session, "olga@example.org"), tickets=(("Free", "0.00", 10),))
    assert issue_owed(session, submitted(session, event, "free")) == []
    monkeypatch.setattr(settings, "zero_invoices", True)
    (invoice,) = issue_owed(session, submitted(session, event, "free"))
    assert (invoice.gross, invoice.sequence) == (D("0.00"), 1)


def test_a_cancelled_invoiced_order_gets_a_credit_note_citing_its_invoice(session: Session) -> None:
    owner = make_user(session, "olga@example.org")
    order = submitted(session, make_event(session, owner=owner), quantity=2)
    change_status(session, order, OrderStatus.COMPLETED, by=owner.email)
    (invoice,) = issue_owed(session, order)
    change_status(session, order, OrderStatus.CANCELLED, by=owner.email)
    original, credit = issue_owed(session, order)
    assert (original.id, credit.kind, credit.cites_id) == (invoice.id, InvoiceKind.CREDIT_NOTE, invoice.id)
    assert credit.sequence == invoice.sequence + 1 and credit.gross == invoice.gross == D("50.00")
    assert len(issue_owed(session, order)) == 2  # and only one


def test_two_workers_numbering_at_once_leave_no_gap_and_no_duplicate(db: sessionmaker[Session]) -> None:
    """Forty orders of one seller numbered by two connections at once, each order twice (a job and its
    redelivery): 1 to 40, each number once, each order one invoice."""
    with db() as session, session.begin():
        event = make_event(session, owner=make_user(session, "olga@example.org"), tickets=(("T", "10.00", 100),))
        ids = [submitted(session, event).id for _ in range(40)]
    factory = pooled(db, 2)
    start = threading.Barrier(2)

    def worker(order_ids: list[int]) -> None:
        start.wait()
        for order_id in order_ids:
            with factory() as session, session.begin():
                issue_owed(session, session.get_one(Order, order_id))

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(worker, [ids, list(reversed(ids))]))
    factory.kw["bind"].dispose()
    with db() as session:
        rows = session.execute(sa.select(Invoice.order_id, Invoice.sequence)).all()
    assert sorted(seq for _, seq in rows) == list(range(1, 41))
    assert sorted(order_id for order_id, _ in rows) == sorted(ids)
