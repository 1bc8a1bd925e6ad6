"""A payment receipt as an A4 PDF, in French, Arabic or English.

It is drawn with the invoice page's machinery (core.documents.invoice_pdf): the same fonts,
HarfBuzz shaping, per-text bidi direction, bidi-control stripping and the mirrored Arabic layout.
Times are shown in Morocco's time (Africa/Casablanca). The same payment and language always give
the same bytes (the creation date is the payment's time).
"""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Sequence

from core.documents.invoice_pdf import TOTALS_WIDTH, ACCENT, HEADING, MARGIN, MUTED, SHADE, STATUS_COLOURS, _clean, _InvoicePage
from core.errors import InvalidAmount
from core.i18n import translator
from core.money import Totals
from core.services.checkout import CHANNEL_LABELS


def paid_at_of(payment: Any) -> datetime:
    """When the gateway says it was paid (kept in the payment's raw record), else when we recorded it."""
    raw = getattr(payment, "raw", None) or {}
    value = raw.get("paid_at") if isinstance(raw, dict) else None
    when = None
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            when = None
    when = when or payment.created_at
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def render_receipt_pdf(payment: Any, checkout: Any, invoices: Sequence[Any], language: str = "fr", *,
                       biller_name: str | None = None, verify_url: str | None = None) -> bytes:
    """The receipt of one Payment for its Checkout and the Invoice rows it paid, as PDF bytes."""
    for invoice in invoices:
        for name in ("amount_ht", "amount_tva", "amount_ttc"):
            value = getattr(invoice, name)
            if not isinstance(value, Decimal) or not value.is_finite():
                raise InvalidAmount(f"{name} must be a finite Decimal, got {value!r}")
    if not isinstance(payment.amount, Decimal):
        raise InvalidAmount(f"payment amount must be Decimal, got {payment.amount!r}")
    t = translator(language)
    page = _ReceiptPage(t, biller_name or checkout.issuer)
    page.verify_url = verify_url
    return page.render_receipt(payment, checkout, list(invoices))


class _ReceiptPage(_InvoicePage):
    def render_receipt(self, payment: Any, checkout: Any, invoices: list[Any]) -> bytes:
        t, pdf = self.t, self.pdf
        paid_at = paid_at_of(payment)
        number = payment.receipt_code or str(payment.id)
        pdf.set_creation_date(paid_at)
        pdf.set_lang(t.language)
        pdf.set_title(_clean(f"{t._('Payment receipt')} {number}"))
        pdf.set_author("Fatoura")
        pdf.set_creator("Fatoura")
        pdf.set_producer("Fatoura")
        pdf.add_page()

        y = self._receipt_header(number)
        gap = 10.0
        w = (self.width - gap) / 2
        channel = checkout.channel or ""
        payment_rows = [
            (t._("Date and time"), t.datetime(paid_at)),
            (t._("Payment method"), t._(CHANNEL_LABELS[channel]) if channel in CHANNEL_LABELS else channel),
            (t._("Transaction ID"), str(payment.transaction_id)),
        ]
        if checkout.reference:
            payment_rows.append((t._("Payment reference"), str(checkout.reference)))
        if checkout.order_id:
            payment_rows.append((t._("Order ID"), str(checkout.order_id)))
        paid_to = [(t._("Issuer"), checkout.issuer)]
        if self.biller_name and self.biller_name.strip().casefold() != checkout.issuer.strip().casefold():
            paid_to.append((t._("Biller"), self.biller_name))
        client = next((i.client_name for i in invoices if getattr(i, "client_name", None)), None)
        if client:
            paid_to.append((t._("Customer"), client))
        left = self._fields(0, y + 6, w, t._("Payment"), payment_rows)
        right = self._fields(w + gap, y + 6, w, t._("Paid to"), paid_to)
        y = self._invoice_table(invoices, max(left, right) + 6)
        self._receipt_totals(invoices, payment, y + 7)
        self._receipt_footer()
        return bytes(pdf.output())

    def _receipt_header(self, number: str) -> float:
        t, half = self.t, self.width / 2
        self._font(17, bold=True)
        bottom = self._text(0, MARGIN, half + 10, "Fatoura", h=8)
        self._font(9, colour=MUTED)
        bottom = self._text(0, bottom, half + 10, t._("Bill payment from your chat"))
        self._font(20, bold=True, colour=ACCENT)
        right = self._text(half - 10, MARGIN - 1, half + 10, t._("Payment receipt"), h=10, end=True)
        self._font(10, bold=True)
        right = self._text(half - 10, right, half + 10, t._("No. {number}", number=number), end=True)
        y = max(bottom, right) + 3
        self._rule(y, ACCENT, 0.6)
        return y

    def _invoice_table(self, invoices: list[Any], y: float) -> float:
        t, pdf = self.t, self.pdf
        columns = [t._("Invoice number"), t._("Billing period"), t._("Due date"), t._("Amount incl. VAT")]
        widths = [0.32, 0.24, 0.2, 0.24]
        rows = [[str(i.number), self._period(getattr(i, "billing_period", None)),
                 t.date(getattr(i, "due_date", None)), t.amount(i.amount_ttc)] for i in invoices]
        aligns = ["start", "start", "start", "end"]
        if self.rtl:
            columns, widths, rows, aligns = columns[::-1], widths[::-1], [r[::-1] for r in rows], aligns[::-1]
        self._font(8, bold=True, colour=ACCENT)
        y = self._text(0, y, self.width, t._("Invoices paid"))
        pdf.set_y(y + 1)
        pdf.set_draw_color(206, 212, 218)
        pdf.set_line_width(0.2)
        self._font(8.5)
        pdf.set_text_shaping(True)
        with pdf.table(col_widths=[w * 100 for w in widths], text_align=tuple(
                self._align(end=a == "end") for a in aligns), line_height=5, padding=1.5,
                headings_style=HEADING, cell_fill_color=SHADE, cell_fill_mode="ROWS",
                borders_layout="HORIZONTAL_LINES") as table:
            for row in [columns, *rows]:
                line = table.row()
                for cell in row:
                    line.cell(_clean(cell))
        return pdf.get_y()

    def _period(self, billing_period: str | None) -> str:
        if not billing_period:
            return "—"
        try:
            return self.t.period(billing_period)
        except (ValueError, TypeError):
            return billing_period

    def _receipt_totals(self, invoices: list[Any], payment: Any, y: float) -> float:
        t, pdf = self.t, self.pdf
        if y > pdf.h - MARGIN - 50:
            pdf.add_page()
            y = MARGIN
        totals = Totals.of(invoices)
        w, top = TOTALS_WIDTH, y
        y = self._totals_box(y, [(t._("Total excl. VAT"), t.amount(totals.ht), False),
                                 (t._("VAT"), t.amount(totals.tva), False),
                                 (t._("Total incl. VAT"), t.amount(totals.ttc), True)])
        side = self.width - w - 10
        self._font(8, bold=True, colour=ACCENT)
        sy = self._text(0, top, side, t._("Status"))
        self._font(12, bold=True, colour=STATUS_COLOURS["paid"])
        sy = self._text(0, sy + 0.5, side, t._("Paid"), h=6)
        self._font(8.5, colour=MUTED)
        sy = self._text(0, sy, side, t._("Amount paid: {amount}", amount=t.amount(payment.amount)))
        return max(y, sy)

    def _receipt_footer(self) -> None:
        t, pdf = self.t, self.pdf
        pdf.set_auto_page_break(False)
        text = t._("Receipt issued by Fatoura for a payment confirmed by the payment gateway. "
                   "Amounts in Moroccan dirhams (MAD).")
        if getattr(self, "verify_url", None):
            text += " " + t._("Check this receipt: {url}", url=self.verify_url)
        pages = pdf.pages_count
        for page in range(1, pages + 1):
            pdf.page = page
            y = pdf.h - MARGIN - 4
            self._rule(y - 1.5)
            self._font(7.5, colour=MUTED)
            self._text(0, y, self.width - 20, text, h=4)
            self._text(self.width - 20, y, 20, f"{page}/{pages}", h=4, end=True)
