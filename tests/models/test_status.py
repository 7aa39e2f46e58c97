"""The transition table, payment-mode mapping and colours, as pure rules."""

from __future__ import annotations

import itertools

import pytest

from models.errors import Forbidden, InvalidTransition, UnknownPaymentMode
from models.status import (
    COLOURS,
    TRANSITIONS,
    Actor,
    OrderStatus,
    check_transition,
    parse_status,
    status_for_payment_mode,
)

S = OrderStatus


def test_every_status_has_its_contract_colour() -> None:
    assert {s.value: c for s, c in COLOURS.items()} == {
        "initializing": "yellow", "placed": "blue", "pending": "orange",
        "completed": "green", "expired": "red", "cancelled": "grey",
    }


@pytest.mark.parametrize(("mode", "status"), [
    ("bank", S.PLACED), ("cheque", S.PLACED), ("onsite", S.PLACED),
    ("stripe", S.PENDING), ("paypal", S.PENDING),
])
def test_payment_mode_sets_the_submitted_status(mode: str, status: OrderStatus) -> None:
    assert status_for_payment_mode(mode, amount_is_zero=False) is status


def test_free_completes_a_zero_total_and_is_refused_otherwise() -> None:
    assert status_for_payment_mode("free", amount_is_zero=True) is S.COMPLETED
    with pytest.raises(InvalidTransition, match="only allowed for orders with a zero total"):
        status_for_payment_mode("free", amount_is_zero=False)


@pytest.mark.parametrize("mode", ["bitcoin", "", "BANK", "<script>"])
def test_unknown_payment_modes_are_refused(mode: str) -> None:
    with pytest.raises(UnknownPaymentMode, match="Unknown payment mode"):
        status_for_payment_mode(mode, amount_is_zero=False)


def test_unknown_status_is_refused_with_the_allowed_list() -> None:
    with pytest.raises(InvalidTransition, match="Unknown status 'paid'; expected one of: initializing"):
        parse_status("paid")


ALLOWED = {
    (S.INITIALIZING, S.PLACED, Actor.BUYER), (S.INITIALIZING, S.PENDING, Actor.BUYER),
    (S.INITIALIZING, S.COMPLETED, Actor.BUYER), (S.INITIALIZING, S.CANCELLED, Actor.ORGANIZER),
    (S.INITIALIZING, S.EXPIRED, Actor.SYSTEM),
    (S.PENDING, S.PLACED, Actor.BUYER), (S.PENDING, S.PENDING, Actor.BUYER),
    (S.PENDING, S.COMPLETED, Actor.BUYER), (S.PENDING, S.COMPLETED, Actor.ORGANIZER),
    (S.PENDING, S.COMPLETED, Actor.SYSTEM), (S.PENDING, S.CANCELLED, Actor.ORGANIZER),
    (S.PENDING, S.EXPIRED, Actor.SYSTEM),
    (S.PLACED, S.COMPLETED, Actor.ORGANIZER), (S.PLACED, S.COMPLETED, Actor.SYSTEM),
    (S.PLACED, S.CANCELLED, Actor.ORGANIZER),
    (S.COMPLETED, S.CANCELLED, Actor.ORGANIZER),
}


def test_the_table_holds_exactly_the_contract_moves() -> None:
    table = {(a, b, actor) for (a, b), actors in TRANSITIONS.items() for actor in actors}
    assert table == ALLOWED


@pytest.mark.parametrize(("current", "target", "actor"), sorted(ALLOWED))
def test_allowed_moves_pass(current: OrderStatus, target: OrderStatus, actor: Actor) -> None:
    check_transition(current, target, actor)


REFUSED = sorted(set(itertools.product(S, S, Actor)) - ALLOWED)


@pytest.mark.parametrize(("current", "target", "actor"), REFUSED)
def test_every_other_move_is_refused_with_a_reason(current: OrderStatus, target: OrderStatus, actor: Actor) -> None:
    if actor is Actor.BUYER and current not in (S.INITIALIZING, S.PENDING):
        with pytest.raises(Forbidden, match="^You cannot update a non-initialized or non-pending order$"):
            check_transition(current, target, actor)
    elif current in (S.EXPIRED, S.CANCELLED):
        with pytest.raises(InvalidTransition, match=f"^Order is {current.value}; .* cannot change$"):
            check_transition(current, target, actor)
    else:
        expected = f"^Cannot change an order from '{current.value}' to '{target.value}'$"
        with pytest.raises(InvalidTransition, match=expected):
            check_transition(current, target, actor)
