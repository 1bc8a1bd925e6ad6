"""One invoice as an A4 PDF, in French, Arabic or English.

fpdf2 draws the page; uharfbuzz shapes the text so Arabic letters join, and fpdf2's bidi
algorithm orders runs right-to-left. For Arabic the whole layout is mirrored: every box is
placed from the right edge and labels sit to the right of their values. DejaVu Sans covers
Latin and Arabic, so one font serves all three languages.
"""
from __future__ import annotations

import re
from datetime import date, datetime, time, timezone
from decimal import Decimal
from pathlib import Path

from babel.lists import format_list
from babel.numbers import format_percent
from fpdf import FPDF
from fpdf.bidi import auto_detect_base_direction
from fpdf.enums import TextDirection, XPos, YPos
from fpdf.fonts import FontFace

from core.billers.base import BillerInvoice
from core.errors import N_, InvalidAmount
from core.i18n import Translator, translator
from core.identifiers import display_phone

FONTS = Path(__file__).resolve().parent / "fonts"
FONT = "DejaVu"
MARGIN = 15.0
INK = (33, 37, 41)
MUTED = (108, 117, 125)
ACCENT = (13, 71, 161)
RULE = (206, 212, 218)
SHADE = (241, 244, 248)
STATUS_COLOURS = {"paid": (46, 125, 50), "unpaid": (198, 40, 40)}
HEADING = FontFace(family=FONT, emphasis="BOLD", color=ACCENT, fill_color=(255, 255, 255))

# Babel wraps Arabic amounts in RLM / ALM marks. fpdf2 already orders the runs, DejaVu has no
# glyph for ALM, and the marks would end up inside the extracted text: drop all bidi controls.
_BIDI_CONTROLS = re.compile("[\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069]")
_MOROCCAN_PHONE = re.compile(r"212\d{9}")
_RTL_LETTER = re.compile("[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc]")

STATUS_LABELS = {
    "paid": N_("Paid"),
    "unpaid": N_("Unpaid"),
    "pending": N_("Payment pending"),
    "cancelled": N_("Cancelled"),
}
PAYMENT_MEANS_LABELS = {
    "cmi": N_("Bank card (CMI)"),
    "amanpay": N_("Amanpay"),
    "cheque": N_("Cheque"),
    "virement": N_("Bank transfer"),
}


def render_invoice_pdf(invoice: BillerInvoice, *, biller_name: str, language: str = "fr",
                       customs_code: str | None = None) -> bytes:
    """The invoice as PDF bytes; the same invoice and language always give the same bytes."""
    for name in ("amount_ht", "amount_tva", "amount_ttc", "tva_rate"):
        value = getattr(invoice, name)
        # Money is Decimal end to end (core.money): a float or a string here is a caller's bug.
        if not isinstance(value, Decimal) or not value.is_finite():
            raise InvalidAmount(f"{name} must be a finite Decimal, got {value!r}")
    t = translator(language)  # unknown languages fall back to French
    return _InvoicePage(t, biller_name).render(invoice, customs_code)


def _clean(text: object) -> str:
    return _BIDI_CONTROLS.sub("", str(text))


TOTALS_WIDTH = 92.0  # mm, the HT / TVA / TTC box


class _InvoicePage:
    def __init__(self, t: Translator, biller_name: str) -> None:
        self.t = t
        self.rtl = t.rtl
        self.biller_name = biller_name
        self.pdf = FPDF(format="A4", unit="mm")
        self.pdf.set_margins(MARGIN, MARGIN, MARGIN)
        self.pdf.set_auto_page_break(True, margin=MARGIN + 8)
        self.pdf.add_font(FONT, "", str(FONTS / "DejaVuSans.ttf"))
        self.pdf.add_font(FONT, "B", str(FONTS / "DejaVuSans-Bold.ttf"))
        self.pdf.set_text_shaping(True)
        self.width = self.pdf.w - 2 * MARGIN

    # Geometry: x is measured from the start edge (left in fr/en, right in ar).
    def _x(self, x: float, w: float) -> float:
        return self.pdf.w - MARGIN - x - w if self.rtl else MARGIN + x

    def _align(self, end: bool = False) -> str:
        return "R" if end != self.rtl else "L"

    def _font(self, size: float, bold: bool = False, colour: tuple[int, int, int] = INK) -> None:
        self.pdf.set_font(FONT, "B" if bold else "", size)
        self.pdf.set_text_color(*colour)

    def _direction(self, text: str) -> TextDirection:
        """Each text's own base direction: a phone number, an invoice number or a Latin name stays
        left-to-right even on the Arabic page, and Arabic data reads right-to-left on any page.
        On the Arabic page any Arabic letter wins, so a list such as "Amanpay وشيك" reads right-to-left
        although it starts with a Latin word; elsewhere the first strong letter decides (Unicode P2)."""
        if self.rtl and _RTL_LETTER.search(text):
            return TextDirection.RTL
        return auto_detect_base_direction(text)

    def _text(self, x: float, y: float, w: float, text: str, *, h: float = 5.0, end: bool = False) -> float:
        """Wrapped text in a box at (x, y), aligned to the start (or end) side; returns the y below it."""
        text = _clean(text)
        self.pdf.set_text_shaping(True, direction=self._direction(text))
        self.pdf.set_xy(self._x(x, w), y)
        self.pdf.multi_cell(w, h, text, align=self._align(end), new_x=XPos.LEFT, new_y=YPos.NEXT)
        return self.pdf.get_y()

    def _line(self, x: float, y: float, w: float, text: str, *, h: float = 5.0, end: bool = False) -> None:
        """One line of text in a box, cut with an ellipsis when too long: table cells. Far cheaper
        than `_text` (no line breaking, and HarfBuzz only for text that needs it), which matters
        for exports of thousands of rows."""
        text = _clean(text)
        if _RTL_LETTER.search(text):
            self.pdf.set_text_shaping(True, direction=self._direction(text))
        else:  # digits, dates and Latin names read left to right on every page, without HarfBuzz
            self.pdf.set_text_shaping(False)
        if self.pdf.get_string_width(text) > w - 1:
            while text and self.pdf.get_string_width(text + "…") > w - 1:
                text = text[:-1]
            text += "…"
        self.pdf.set_xy(self._x(x, w), y)
        self.pdf.cell(w, h, text, align=self._align(end))

    def _height(self, w: float, text: str, h: float = 5.0) -> float:
        """The height `_text` would take, without drawing."""
        text = _clean(text)
        self.pdf.set_text_shaping(True, direction=self._direction(text))
        return self.pdf.multi_cell(w, h, text, dry_run=True, output="HEIGHT")

    def _rule(self, y: float, colour: tuple[int, int, int] = RULE, width: float = 0.3) -> None:
        self.pdf.set_draw_color(*colour)
        self.pdf.set_line_width(width)
        self.pdf.line(MARGIN, y, self.pdf.w - MARGIN, y)

    def _fields(self, x: float, y: float, w: float, title: str, rows: list[tuple[str, str]]) -> float:
        """A titled block of label / value rows (the label on the start side); returns its bottom."""
        self._font(8, bold=True, colour=ACCENT)
        y = self._text(x, y, w, title.upper() if not self.rtl else title, h=5)
        self.pdf.set_draw_color(*ACCENT)
        self.pdf.line(self._x(x, w), y, self._x(x, w) + w, y)
        y += 1.5
        label_w = w * 0.42
        for label, value in rows:
            self._font(8.5, colour=MUTED)
            bottom = self._text(x, y, label_w, label)
            self._font(9, bold=True)
            y = max(bottom, self._text(x + label_w, y, w - label_w, value)) + 0.8
        return y

    def render(self, invoice: BillerInvoice, customs_code: str | None) -> bytes:
        t, pdf = self.t, self.pdf
        issued = datetime.combine(invoice.invoice_date, time(), tzinfo=timezone.utc)
        pdf.set_creation_date(issued)  # fixed, not "now": the same invoice gives the same bytes
        pdf.set_lang(t.language)
        pdf.set_title(_clean(f"{t._('Invoice')} {invoice.number}"))
        pdf.set_author(_clean(self.biller_name))
        pdf.set_creator("Fatoura")
        pdf.set_producer("Fatoura")
        pdf.add_page()

        y = self._header(invoice)
        y = self._parties(invoice, customs_code, y + 6)
        if invoice.prestations:
            y = self._prestations(invoice, y + 6)
        if invoice.description:
            self._font(8, bold=True, colour=ACCENT)
            y = self._text(0, y + 5, self.width, t._("Description"))
            self._font(9)
            # A free-text paragraph aligns by its own script (like HTML dir=auto), so an Arabic
            # description on a French page starts at the right edge rather than ragged on the left.
            own_rtl = self._direction(_clean(invoice.description)) == TextDirection.RTL
            y = self._text(0, y + 0.5, self.width, invoice.description.strip(), end=own_rtl != self.rtl)
        y = self._totals(invoice, y + 7)
        self._footer()
        return bytes(pdf.output())

    def _header(self, invoice: BillerInvoice) -> float:
        t, half = self.t, self.width / 2
        self._font(17, bold=True)
        bottom = self._text(0, MARGIN, half + 10, self.biller_name, h=8)
        if invoice.issuer and invoice.issuer.strip().casefold() != self.biller_name.strip().casefold():
            self._font(9, colour=MUTED)
            bottom = self._text(0, bottom, half + 10, t._("Issuer: {issuer}", issuer=invoice.issuer))
        self._font(22, bold=True, colour=ACCENT)
        right = self._text(half, MARGIN - 1, half, t._("Invoice"), h=10, end=True)
        self._font(10, bold=True)
        right = self._text(half, right, half, t._("No. {number}", number=invoice.number), end=True)
        y = max(bottom, right) + 3
        self._rule(y, ACCENT, 0.6)
        return y

    def _parties(self, invoice: BillerInvoice, customs_code: str | None, y: float) -> float:
        t, gap = self.t, 10.0
        w = (self.width - gap) / 2
        client = [(t._("Name"), invoice.client_name)]
        if customs_code:
            client.append((t._("Customs code"), customs_code))
        if invoice.customer_number:
            client.append((t._("Customer number"), invoice.customer_number))
        if invoice.call_number:
            phone = invoice.call_number
            client.append((t._("Call number"), display_phone(phone) if _MOROCCAN_PHONE.fullmatch(phone) else phone))
        details = [(t._("Invoice number"), invoice.number), (t._("Type"), invoice.invoice_type)]
        if invoice.billing_period:
            details.append((t._("Billing period"), _period(t, invoice.billing_period)))
        details += [(t._("Invoice date"), t.date(invoice.invoice_date)), (t._("Due date"), t.date(invoice.due_date))]
        left = self._fields(0, y, w, t._("Billed to"), client)
        right = self._fields(w + gap, y, w, t._("Invoice details"), details)
        return max(left, right)

    def _prestations(self, invoice: BillerInvoice, y: float) -> float:
        t, pdf = self.t, self.pdf
        columns = [t._("Service"), t._("Operation"), t._("Reference"), t._("End date")]
        widths = [0.34, 0.22, 0.28, 0.16]
        rows = [[str(p.get("name") or "—"), str(p.get("operation_type") or "—"), str(p.get("reference") or "—"),
                 _end_date(t, p.get("end_date"))] for p in invoice.prestations]
        if self.rtl:  # the first column goes on the right
            columns, widths, rows = columns[::-1], widths[::-1], [row[::-1] for row in rows]
        self._font(8, bold=True, colour=ACCENT)
        y = self._text(0, y, self.width, t._("Services"))
        pdf.set_y(y + 1)
        pdf.set_draw_color(*RULE)
        pdf.set_line_width(0.2)
        self._font(8.5)
        pdf.set_text_shaping(True)  # cells: each paragraph's first strong letter decides
        with pdf.table(col_widths=[w * 100 for w in widths], text_align=self._align(), line_height=5,
                       padding=1.5, headings_style=HEADING, cell_fill_color=SHADE,
                       cell_fill_mode="ROWS", borders_layout="HORIZONTAL_LINES") as table:
            for row in [columns, *rows]:
                line = table.row()
                for cell in row:
                    line.cell(_clean(cell))
        return pdf.get_y()

    def _totals(self, invoice: BillerInvoice, y: float) -> float:
        t, pdf = self.t, self.pdf
        if y > pdf.h - MARGIN - 60:  # keep the totals block in one piece
            pdf.add_page()
            y = MARGIN
        rate = format_percent(invoice.tva_rate, locale=t.locale)
        w, top = TOTALS_WIDTH, y
        y = self._totals_box(y, [(t._("Total excl. VAT"), t.amount(invoice.amount_ht), False),
                                 (t._("VAT ({rate})", rate=rate), t.amount(invoice.amount_tva), False),
                                 (t._("Total incl. VAT"), t.amount(invoice.amount_ttc), True)])

        # Status and payment means beside the totals, on the start side.
        side = self.width - w - 10
        status = invoice.status if invoice.status in STATUS_LABELS else None
        label = t._(STATUS_LABELS[status]) if status else invoice.status
        self._font(8, bold=True, colour=ACCENT)
        sy = self._text(0, top, side, t._("Status"))
        self._font(12, bold=True, colour=STATUS_COLOURS.get(invoice.status, INK))
        sy = self._text(0, sy + 0.5, side, label, h=6)
        if invoice.status == "unpaid":
            self._font(8.5, colour=MUTED)
            sy = self._text(0, sy, side, t._("To pay before {date}", date=t.date(invoice.due_date)))
        if invoice.payment_means:
            means = format_list([t._(PAYMENT_MEANS_LABELS[m]) if m in PAYMENT_MEANS_LABELS else m
                                 for m in invoice.payment_means], locale=t.locale)
            self._font(8, bold=True, colour=ACCENT)
            sy = self._text(0, sy + 3, side, t._("Accepted payment means"))
            self._font(9)
            sy = self._text(0, sy + 0.5, side, means)
        return max(y, sy)

    def _totals_box(self, y: float, lines: list[tuple[str, str, bool]], w: float = TOTALS_WIDTH) -> float:
        """HT / TVA / TTC rows on the end side, the grand total filled; returns the y below."""
        pdf, pad = self.pdf, 1.8
        # Amounts never wrap (they are widest in the bold TTC line); the labels get the rest.
        self._font(10.5, bold=True)
        amount_w = min(w / 2, max(pdf.get_string_width(_clean(amount)) for _, amount, _ in lines) + 2)
        label_w = w - amount_w - 3 * pad
        x = self.width - w
        for label, amount, grand in lines:
            # Translated labels may wrap: measure first so the row (and its fill) fits them.
            self._font(10.5 if grand else 9, bold=grand, colour=(255, 255, 255) if grand else MUTED)
            height = max(self._height(label_w, label), self._height(amount_w, amount)) + 2 * pad
            if grand:
                pdf.set_fill_color(*ACCENT)
                pdf.rect(self._x(x, w), y, w, height, style="F")
            self._text(x + pad, y + pad, label_w, label)
            if not grand:
                pdf.set_text_color(*INK)
            self._text(x + 2 * pad + label_w, y + pad, amount_w, amount, end=True)
            y += height
            if not grand:
                self._rule_at(x, y, w)
        return y

    def _rule_at(self, x: float, y: float, w: float) -> None:
        self.pdf.set_draw_color(*RULE)
        self.pdf.set_line_width(0.2)
        self.pdf.line(self._x(x, w), y, self._x(x, w) + w, y)

    def _footer(self) -> None:
        # Drawn once the content is laid out, on every page, just above the bottom margin.
        t, pdf = self.t, self.pdf
        pdf.set_auto_page_break(False)
        text = t._("Copy generated by Fatoura from the data of {biller}. Amounts in Moroccan dirhams (MAD).",
                   biller=self.biller_name)
        pages = pdf.pages_count
        for page in range(1, pages + 1):
            pdf.page = page
            y = pdf.h - MARGIN - 4
            self._rule(y - 1.5)
            self._font(7.5, colour=MUTED)
            self._text(0, y, self.width - 20, text, h=4)
            self._text(self.width - 20, y, 20, f"{page}/{pages}", h=4, end=True)


def _period(t: Translator, billing_period: str) -> str:
    try:
        return t.period(billing_period)
    except (ValueError, TypeError):  # not MM/YYYY: show what the biller sent
        return billing_period


def _end_date(t: Translator, value: object) -> str:
    """Prestation end dates come as datetime, date or an ISO string (stored as JSON)."""
    if isinstance(value, str) and value:
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        value = value.date()
    return t.date(value) if isinstance(value, date) else "—"
