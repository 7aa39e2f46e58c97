"""Void tickets and ticket codes: pure rules, no database."""

from __future__ import annotations

import pytest

from models.checkins import format_code, normalize_code
from models.errors import Gone
from models.orders import CODE_ALPHABET, CODE_LENGTH, new_code
from models.status import ADMITTED, FINAL, VOID_TICKETS, OrderStatus, check_tickets_valid


def test_exactly_the_final_statuses_void_their_tickets_and_only_issued_ones_are_admitted() -> None:
    assert set(VOID_TICKETS) == FINAL
    assert {OrderStatus.PLACED, OrderStatus.COMPLETED} == ADMITTED and not ADMITTED & FINAL


@pytest.mark.parametrize("status", list(OrderStatus))
def test_void_tickets_are_gone_with_a_reason(status: OrderStatus) -> None:
    if status in FINAL:
        with pytest.raises(Gone) as refused:
            check_tickets_valid(status)
        assert refused.value.detail.endswith("; its tickets are void")
    else:
        check_tickets_valid(status)


def test_a_code_is_ten_unambiguous_characters_printed_in_two_groups() -> None:
    codes = {new_code() for _ in range(200)}
    assert len(codes) == 200
    assert all(len(c) == CODE_LENGTH and set(c) <= set(CODE_ALPHABET) for c in codes)
    assert not set("ILOU") & set(CODE_ALPHABET)
    assert format_code("K7QM2D9FXH") == "K7QM2-D9FXH" and format_code(None) == ""


@pytest.mark.parametrize(("typed", "code"), [
    ("K7QM2-D9FXH", "K7QM2D9FXH"), (" k7qm2 d9fxh ", "K7QM2D9FXH"), ("O1234-5678I", "0123456781"),
    ("l0000-00000", "1000000000"), ("K7QM2-D9FX", None), ("K7QM2-D9FXU", None), ("", None),
    ("sQ3r9-token-like_secret", None),
])
def test_a_typed_code_is_read_as_people_type_it(typed: str, code: str | None) -> None:
    assert normalize_code(typed) == code
