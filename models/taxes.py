"""Tax math for order totals and invoices: net, tax and gross per line and per rate, in Decimal cents.

Prices that include tax: each line's gross is what the buyer pays, its net is the gross taken back
to the rate (rounded half up), its tax the difference, so the totals add up to the order's amount.
Prices before tax: each rate's tax is its net total times the rate (EN 16931 BR-CO-17), shared
over its lines so that the lines add up to the rate's total.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
HUNDRED = Decimal(100)


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Item:
    """What was sold: `unit_price` as the seller priced it (with or without tax)."""

    name: str
    quantity: int
    unit_price: Decimal
    rate: Decimal


@dataclass(frozen=True)
class Line:
    name: str
    quantity: int
    unit_price: Decimal
    rate: Decimal
    net: Decimal
    tax: Decimal
    gross: Decimal

    @property
    def unit_net(self) -> Decimal:
        """The net price of one unit, to four places (EN 16931 prices carry up to four)."""
        return (self.net / self.quantity).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class RateTotal:
    rate: Decimal
    net: Decimal
    tax: Decimal
    gross: Decimal


@dataclass(frozen=True)
class Totals:
    lines: tuple[Line, ...]
    rates: tuple[RateTotal, ...]
    net: Decimal
    tax: Decimal
    gross: Decimal


def compute(items: Sequence[Item], *, prices_include_tax: bool) -> Totals:
    """Lines in the order of `items`; one total per rate, lowest rate first."""
    by_index: dict[int, Line] = {}
    for rate in sorted({i.rate for i in items}):
        group = [(n, i) for n, i in enumerate(items) if i.rate == rate]
        priced = (_gross_lines if prices_include_tax else _net_lines)([i for _, i in group])
        by_index.update(zip([n for n, _ in group], priced, strict=True))
    lines = tuple(by_index[n] for n in range(len(items)))
    rates = tuple(
        RateTotal(rate, sum_of(group, "net"), sum_of(group, "tax"), sum_of(group, "gross"))
        for rate in sorted({line.rate for line in lines})
        for group in [[line for line in lines if line.rate == rate]]
    )
    return Totals(lines, rates, sum_of(rates, "net"), sum_of(rates, "tax"), sum_of(rates, "gross"))


def sum_of(rows: Sequence[Line] | Sequence[RateTotal], name: str) -> Decimal:
    return sum((getattr(row, name) for row in rows), Decimal("0.00"))


def _gross_lines(items: Sequence[Item]) -> list[Line]:
    lines = []
    for item in items:
        gross = cents(item.unit_price * item.quantity)
        net = cents(gross * HUNDRED / (HUNDRED + item.rate))
        lines.append(Line(item.name, item.quantity, item.unit_price, item.rate, net, gross - net, gross))
    return lines


def _net_lines(items: Sequence[Item]) -> list[Line]:
    nets = [cents(i.unit_price * i.quantity) for i in items]
    rate = items[0].rate
    total_tax = cents(sum(nets, Decimal("0")) * rate / HUNDRED)
    taxes = [cents(net * rate / HUNDRED) for net in nets]
    taxes[-1] += total_tax - sum(taxes, Decimal("0"))  # the rounding difference, on the last line
    return [Line(i.name, i.quantity, i.unit_price, i.rate, net, tax, net + tax)
            for i, net, tax in zip(items, nets, taxes, strict=True)]
