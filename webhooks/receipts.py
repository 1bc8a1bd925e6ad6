"""`GET /receipts/{code}`: anyone holding a receipt can check it is genuine."""
from __future__ import annotations

import html

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from core.i18n import pick_language, translator
from core.models import Checkout, CheckoutItem, Invoice, Payment
from core.reports.receipts import receipt_of
from webhooks.payments import _p, _page

router = APIRouter(include_in_schema=False)


@router.get("/receipts/{code}", response_class=HTMLResponse)
async def verify_receipt(code: str, request: Request) -> HTMLResponse:
    state = request.app.state.fatoura
    t = translator(pick_language(request.query_params.get("lang") or request.headers.get("accept-language")))
    receipt = receipt_of(state.settings, code)
    payment = None
    if receipt is not None:
        async with state.db.session() as session:
            payment = await session.scalar(select(Payment).where(Payment.receipt_code == receipt,
                                                                 Payment.status == "paid"))
            if payment is not None:
                checkout = await session.get(Checkout, payment.checkout_id)
                numbers = (await session.scalars(
                    select(Invoice.number).join(CheckoutItem, CheckoutItem.invoice_id == Invoice.id)
                    .where(CheckoutItem.checkout_id == payment.checkout_id).order_by(Invoice.number))).all()
    if payment is None:
        # Forged, mistyped or unknown: one answer, so the page tells nothing about which.
        return _page(t, t._("Receipt not recognised"), _p(t._(
            "This receipt could not be verified. Check the address printed on the receipt.")), status=404)
    rows = [(t._("Receipt No."), receipt), (t._("Paid on"), t.datetime(payment.created_at)),
            (t._("Amount paid"), t.amount(payment.amount)), (t._("Paid to"), checkout.issuer),
            (t._("Transaction ID"), payment.transaction_id), (t._("Invoices paid"), ", ".join(numbers))]
    body = _p(t._("This receipt is genuine: Fatoura recorded this payment.")) + "<dl>" + "".join(
        f"<dt>{html.escape(label)}</dt><dd>{html.escape(str(value))}</dd>" for label, value in rows) + "</dl>"
    return _page(t, t._("Genuine receipt"), body)
