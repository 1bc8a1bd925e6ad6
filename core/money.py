"""Money in Moroccan dirhams: Decimal amounts, TVA, and totals of a selection of invoices.

Every amount is a Decimal rounded to the centime, half-up (the portals' rule); a float never
enters: seed 002 printed "Total TVA: 880.80000000000002 MAD" because its portal summed floats.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Iterable, Protocol

from core.errors import InvalidAmount

CURRENCY = "MAD"
CURRENCY_NUMERIC = "504"
CENTIME = Decimal("0.01")
STANDARD_TVA_RATE = Decimal("0.20")
ZERO = Decimal("0.00")


def quantize(value: Decimal) -> Decimal:
    return value.quantize(CENTIME, rounding=ROUND_HALF_UP)


def parse_amount(value: object, *, allow_zero: bool = False) -> Decimal:
    """A customer- or biller-given amount as Decimal: accepts '249,84', '249.84', Decimal, int.

    Refuses floats (they are already wrong), negatives, NaN/infinity and more than 2 decimals.
    """
    if isinstance(value, bool) or isinstance(value, float):
        raise InvalidAmount(f"refused non-decimal amount {value!r}")
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, Decimal):
        number = value
    elif isinstance(value, str):
        text = value.strip().replace("\u202f", "").replace("\xa0", "").replace(" ", "")
        if text.count(",") == 1 and "." not in text:
            text = text.replace(",", ".")
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise InvalidAmount(f"not a number: {value!r}") from None
    else:
        raise InvalidAmount(f"not an amount: {value!r}")
    if not number.is_finite():
        raise InvalidAmount(f"not a finite amount: {value!r}")
    if number < 0 or (number == 0 and not allow_zero):
        raise InvalidAmount(f"amount must be positive: {value!r}")
    if number != number.quantize(CENTIME, rounding=ROUND_HALF_UP):
        raise InvalidAmount(f"more than 2 decimals: {value!r}")
    return quantize(number)


def tva_of(ht: Decimal, rate: Decimal = STANDARD_TVA_RATE) -> Decimal:
    return quantize(ht * rate)


@dataclass(frozen=True)
class Amounts:
    """HT, TVA and TTC of one invoice, as the biller printed them (TVA = TTC - HT)."""

    ht: Decimal
    tva: Decimal
    ttc: Decimal

    @classmethod
    def from_ht(cls, ht: Decimal, rate: Decimal = STANDARD_TVA_RATE) -> "Amounts":
        ht = parse_amount(ht, allow_zero=True)
        tva = tva_of(ht, rate)
        return cls(ht=ht, tva=tva, ttc=ht + tva)

    @classmethod
    def from_ht_ttc(cls, ht: object, ttc: object) -> "Amounts":
        ht_d = parse_amount(ht, allow_zero=True)
        ttc_d = parse_amount(ttc, allow_zero=True)
        if ttc_d < ht_d:
            raise InvalidAmount(f"TTC {ttc_d} below HT {ht_d}")
        return cls(ht=ht_d, tva=ttc_d - ht_d, ttc=ttc_d)

    # The invoice column names, so Totals.of takes Amounts like invoices.
    amount_ht = property(lambda self: self.ht)
    amount_tva = property(lambda self: self.tva)
    amount_ttc = property(lambda self: self.ttc)


class HasAmounts(Protocol):
    amount_ht: Decimal
    amount_tva: Decimal
    amount_ttc: Decimal


@dataclass(frozen=True)
class Totals:
    """Totals of a selection: the sum of each invoice's printed amounts, to the centime."""

    ht: Decimal
    tva: Decimal
    ttc: Decimal
    count: int

    @classmethod
    def of(cls, invoices: Iterable[HasAmounts]) -> "Totals":
        ht = tva = ttc = ZERO
        count = 0
        for invoice in invoices:
            ht += invoice.amount_ht
            tva += invoice.amount_tva
            ttc += invoice.amount_ttc
            count += 1
        return cls(ht=quantize(ht), tva=quantize(tva), ttc=quantize(ttc), count=count)


def format_plain(amount: Decimal) -> str:
    """Dot and two decimals, as gateways want it ('150.00'); never for display to a person."""
    return str(quantize(amount))
