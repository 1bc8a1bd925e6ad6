"""Amounts billed per month, as the Maroc Telecom portal's "Consulter mes rapports" chart (seed 000):
the figures, a short summary, and the bar chart as a PNG drawn with Pillow (raqm shapes Arabic)."""
from __future__ import annotations

import io
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Iterable, Protocol

from PIL import Image, ImageDraw, ImageFont

from core.i18n import Translator
from core.money import ZERO, quantize

FONTS = Path(__file__).resolve().parent.parent / "documents" / "fonts"
ACCENT, INK, MUTED, GRID = (15, 76, 129), (33, 37, 41), (108, 117, 125), (222, 226, 230)


class Billed(Protocol):
    billing_period: str | None
    invoice_date: object
    amount_ht: Decimal


@dataclass(frozen=True)
class Spending:
    periods: tuple[str, ...]  # "MM/YYYY", oldest first
    amounts: tuple[Decimal, ...]  # HT billed per period
    previous_total: Decimal  # the same number of months just before

    @property
    def total(self) -> Decimal:
        return sum(self.amounts, ZERO)

    @property
    def average(self) -> Decimal:
        return quantize(self.total / len(self.amounts)) if self.amounts else ZERO

    @property
    def highest(self) -> tuple[str, Decimal] | None:
        if not self.amounts or not any(self.amounts):
            return None
        index = max(range(len(self.amounts)), key=lambda i: self.amounts[i])
        return self.periods[index], self.amounts[index]

    @property
    def change(self) -> Decimal | None:
        """Percent change of the total against the previous period, None when there was nothing."""
        if not self.previous_total:
            return None
        return quantize((self.total - self.previous_total) * 100 / self.previous_total)


def _period_of(invoice: Billed) -> str | None:
    if invoice.billing_period:
        return invoice.billing_period
    if invoice.invoice_date is not None:
        return f"{invoice.invoice_date.month:02d}/{invoice.invoice_date.year}"
    return None


def _key(period: str) -> int:
    month, year = period.split("/")
    return int(year) * 12 + int(month) - 1


def _period(key: int) -> str:
    return f"{key % 12 + 1:02d}/{key // 12}"


def monthly(invoices: Iterable[Billed], months: int = 6) -> Spending:
    """The last `months` billing periods (ending at the latest one billed) and their HT totals."""
    if months < 1 or months > 24:
        raise ValueError("months must be 1 to 24")
    by_key: dict[int, Decimal] = {}
    for invoice in invoices:
        period = _period_of(invoice)
        if period:
            by_key[_key(period)] = by_key.get(_key(period), ZERO) + invoice.amount_ht
    if not by_key:
        return Spending((), (), ZERO)
    last = max(by_key)
    keys = range(last - months + 1, last + 1)
    previous = sum((by_key.get(k, ZERO) for k in range(last - 2 * months + 1, last - months + 1)), ZERO)
    return Spending(tuple(_period(k) for k in keys), tuple(quantize(by_key.get(k, ZERO)) for k in keys),
                    quantize(previous))


def summary(t: Translator, spending: Spending) -> str:
    if not spending.periods:
        return t._("No invoice to chart yet.")
    lines = [t._("Billed over {n} months (HT): {total}", n=len(spending.periods), total=t.amount(spending.total)),
             t._("Monthly average: {amount}", amount=t.amount(spending.average))]
    if spending.change is not None:
        lines.append(t._("Change against the previous {n} months: {percent}%", n=len(spending.periods),
                         percent=f"{spending.change:+}"))
    if spending.highest:
        period, amount = spending.highest
        lines.append(t._("Highest month: {period} ({amount})", period=t.period(period), amount=t.amount(amount)))
    return "\n".join(lines)


def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONTS / ("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf")), size,
                              layout_engine=ImageFont.Layout.RAQM)


def _clean(text: str) -> str:
    # Babel wraps ar_MA amounts in bidi marks DejaVu has no glyph for; raqm orders the text itself.
    return "".join(ch for ch in text if ch not in "\u200e\u200f\u061c\u2066\u2067\u2068\u2069")


def render_chart(t: Translator, spending: Spending, title: str) -> bytes:
    """A PNG bar chart: one bar per month with its amount, months on the axis, right to left in Arabic."""
    width, height, pad = 1000, 620, 60
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    direction = "rtl" if t.rtl else "ltr"
    language = t.language

    def text(xy, value: str, font, fill=INK, anchor="la") -> None:  # noqa: ANN001
        draw.text(xy, _clean(value), font=font, fill=fill, anchor=anchor, direction=direction, language=language)

    title_font, label_font, small = _font(30, bold=True), _font(20), _font(18)
    text((width - pad if t.rtl else pad, 30), title, title_font, ACCENT, anchor="ra" if t.rtl else "la")
    text((width - pad if t.rtl else pad, 78), t._("Amounts billed, excl. tax (HT)"), small, MUTED,
         anchor="ra" if t.rtl else "la")
    top, bottom = 140, height - 90
    count = max(1, len(spending.amounts))
    peak = max(spending.amounts, default=ZERO) or Decimal(1)
    slot = (width - 2 * pad) / count
    for i in range(5):  # light grid
        y = bottom - (bottom - top) * i / 4
        draw.line([(pad, y), (width - pad, y)], fill=GRID, width=1)
    for index, (period, amount) in enumerate(zip(spending.periods, spending.amounts)):
        position = count - 1 - index if t.rtl else index  # time runs right to left in Arabic
        x0 = pad + slot * position + slot * 0.18
        x1 = pad + slot * (position + 1) - slot * 0.18
        share = amount / peak  # Decimal; only the bar's height in pixels is a float
        y0 = bottom - float(share) * (bottom - top)
        draw.rectangle([x0, y0, x1, bottom], fill=ACCENT)
        centre = (x0 + x1) / 2
        text((centre, y0 - 8), t.number(amount), small, INK, anchor="md")
        text((centre, bottom + 14), t.period(period), label_font, INK, anchor="ma")
    draw.line([(pad, bottom), (width - pad, bottom)], fill=INK, width=2)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()
