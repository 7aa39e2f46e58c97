"""Every rule about order statuses lives here: the enum, colours, payment modes, ONE transition table."""

from __future__ import annotations

import enum
from collections.abc import Mapping

from models.errors import Forbidden, Gone, InvalidTransition, UnknownPaymentMode


class OrderStatus(enum.StrEnum):
    INITIALIZING = "initializing"
    PLACED = "placed"
    PENDING = "pending"
    COMPLETED = "completed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class Actor(enum.StrEnum):
    """Who asks for a move: the buyer (submitting the form), a co-organizer, or ticketq itself."""

    BUYER = "buyer"
    ORGANIZER = "organizer"
    SYSTEM = "system"


COLOURS: Mapping[OrderStatus, str] = {
    OrderStatus.INITIALIZING: "yellow",
    OrderStatus.PLACED: "blue",
    OrderStatus.PENDING: "orange",
    OrderStatus.COMPLETED: "green",
    OrderStatus.EXPIRED: "red",
    OrderStatus.CANCELLED: "grey",
}

class PaymentMode(enum.StrEnum):
    """Every mode the buyer's form accepts (an enum, so the API's schema lists them)."""

    FREE = "free"
    BANK = "bank"
    CHEQUE = "cheque"
    ONSITE = "onsite"
    STRIPE = "stripe"
    PAYPAL = "paypal"
    OMISE = "omise"
    ALIPAY = "alipay"
    PAYTM = "paytm"
    CARD = "card"
    ONLINE = "online"


M = PaymentMode
FREE_MODE = M.FREE.value
OFFLINE_MODES = frozenset({M.BANK.value, M.CHEQUE.value, M.ONSITE.value})
# "Any other mode" of the contract means an online provider; we name the ones we accept so a
# typo or a hostile string is refused instead of silently parking the order in `pending`.
ONLINE_MODES = frozenset(m.value for m in M) - OFFLINE_MODES - {FREE_MODE}
PAYMENT_MODES = frozenset(m.value for m in M)

S, B, O, X = OrderStatus, Actor.BUYER, Actor.ORGANIZER, Actor.SYSTEM  # noqa: E741

# (from, to) -> who may make that move. Anything absent is refused.
TRANSITIONS: Mapping[tuple[OrderStatus, OrderStatus], frozenset[Actor]] = {
    (S.INITIALIZING, S.PLACED): frozenset({B}),
    (S.INITIALIZING, S.PENDING): frozenset({B}),
    (S.INITIALIZING, S.COMPLETED): frozenset({B}),
    (S.INITIALIZING, S.CANCELLED): frozenset({O}),
    (S.INITIALIZING, S.EXPIRED): frozenset({X}),
    (S.PENDING, S.PLACED): frozenset({B}),
    (S.PENDING, S.PENDING): frozenset({B}),
    (S.PENDING, S.COMPLETED): frozenset({B, O, X}),
    (S.PENDING, S.CANCELLED): frozenset({O}),
    (S.PENDING, S.EXPIRED): frozenset({X}),
    (S.PLACED, S.COMPLETED): frozenset({O, X}),
    (S.PLACED, S.CANCELLED): frozenset({O}),
    (S.COMPLETED, S.CANCELLED): frozenset({O}),
}

FINAL = frozenset({S.EXPIRED, S.CANCELLED})
# Statuses whose tickets are held only until `expires_at`; entering one sets a new deadline.
DEADLINED = frozenset({S.INITIALIZING, S.PENDING})
# Statuses whose tickets are held for good.
HOLDING = frozenset({S.PLACED, S.COMPLETED})
# Entering one of these queues the confirmation job.
CONFIRMED = frozenset({S.PLACED, S.COMPLETED})
# A co-organizer may create an order directly in one of these.
CREATABLE_BY_ORGANIZER = frozenset({S.INITIALIZING, S.PLACED, S.PENDING, S.COMPLETED})
# Only these orders have a confirmation that can be resent.
RESENDABLE = CONFIRMED
# Entering a final status revokes the order's tickets: their PDFs answer 410 and the door refuses
# their codes. Read from the status itself, so the compare-and-set that ends the order (or the
# sweep's UPDATE) revokes them at once, and a final status never lets a secret work again.
VOID_TICKETS: Mapping[OrderStatus, str] = {
    S.CANCELLED: "This order was cancelled; its tickets are void",
    S.EXPIRED: "This order expired; its tickets are void",
}
# Tickets sent with a confirmation: the only ones the door admits (an unsubmitted order's are not issued).
ADMITTED = CONFIRMED

BUYER_UPDATE_REFUSED = "You cannot update a non-initialized or non-pending order"


def parse_status(value: str) -> OrderStatus:
    try:
        return OrderStatus(value)
    except ValueError:
        allowed = ", ".join(s.value for s in OrderStatus)
        raise InvalidTransition(f"Unknown status '{value}'; expected one of: {allowed}") from None


def status_for_payment_mode(mode: str, amount_is_zero: bool) -> OrderStatus:
    """The status a submitted order takes from its payment mode (contract section 4)."""
    if mode == FREE_MODE:
        if not amount_is_zero:
            raise InvalidTransition("Payment mode 'free' is only allowed for orders with a zero total")
        return S.COMPLETED
    if mode in OFFLINE_MODES:
        return S.PLACED
    if mode in ONLINE_MODES:
        return S.PENDING
    raise UnknownPaymentMode(
        f"Unknown payment mode '{mode}'; expected one of: {', '.join(sorted(PAYMENT_MODES))}"
    )


def check_buyer_may_update(current: OrderStatus) -> None:
    """Only an initializing or pending order is still the buyer's to edit."""
    if current not in DEADLINED:
        raise Forbidden(BUYER_UPDATE_REFUSED, pointer="/data/status")


LOCALE_FROZEN = "The language of a cancelled or expired order no longer changes"


def check_locale_change(current: OrderStatus, actor: Actor) -> None:
    """The buyer may change the order's language while the order is theirs to edit; its organizers
    until it ends (the next resend then goes out, with new PDFs, in the new language)."""
    if actor is Actor.BUYER:
        check_buyer_may_update(current)
    elif current in FINAL:
        raise Forbidden(LOCALE_FROZEN, pointer="/data/locale")


def check_transition(current: OrderStatus, target: OrderStatus, actor: Actor) -> None:
    """Raise the domain error for a refused move; return quietly for an allowed one."""
    if actor is Actor.BUYER:
        check_buyer_may_update(current)
    allowed = TRANSITIONS.get((current, target), frozenset())
    if actor in allowed:
        return
    if current in FINAL:
        raise InvalidTransition(f"Order is {current.value}; {current.value} orders cannot change")
    raise InvalidTransition(f"Cannot change an order from '{current.value}' to '{target.value}'")


def is_resendable(status: OrderStatus) -> bool:
    return status in RESENDABLE


def check_tickets_valid(status: OrderStatus, *, pointer: str = "/data/order") -> None:
    """410 for the tickets of a cancelled or expired order; quiet otherwise."""
    reason = VOID_TICKETS.get(status)
    if reason is not None:
        raise Gone(reason, pointer=pointer)


def is_paid(status: OrderStatus) -> bool:
    return status is OrderStatus.COMPLETED


def is_payment_received(current: OrderStatus, target: OrderStatus) -> bool:
    """A placed order (bank, cheque, on site) marked completed: its buyer hears the payment arrived."""
    return current is OrderStatus.PLACED and target is OrderStatus.COMPLETED
