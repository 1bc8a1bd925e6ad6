"""Sandbox payment gateways: simulators that call our callback endpoints with real signatures.

Served when `settings.sandbox` is on (the app includes `router`):

    POST /sandbox/cmi/est3Dgate      a CMI-like 3-D Secure hosted page: checks the posted ver3 hash
                                     like CMI, shows a card form and the test cards (fr / ar / en)
    POST /sandbox/cmi/pay            the card form: maps the test card to an outcome, POSTs CMI's
                                     server-to-server callback (CMI's field casing, ver3 callback
                                     hash) to callbackUrl, then sends the browser to okUrl or
                                     failUrl with an auto-submitting POST form, as CMI does
    GET|POST /sandbox/counter        an "agency counter" that takes the payment of a Fatourati
                                     reference or a Tashilat code (on time, after expiry, any amount)
    GET|POST /sandbox/amanpay/{m}    Amanpay's card / PayDirect / Amanty pages (m = card, paydirect,
                                     amanty): pay or refuse a Tashilat order

The card number typed on the CMI page is never stored, logged or echoed: it only selects an
outcome, and the callback carries it masked (`400000***0002`) like CMI's MaskedPan. The expiry
date and CVV are read by nobody.

Timing, like CMI with `CallbackResponse=true`: the callback is posted first and its answer awaited
(10 s), then the browser goes to okUrl (approved and answered `ACTION=POSTAUTH`) or failUrl
(declined, or the merchant answered anything else: CMI then voids the pre-authorisation). The
"late callback" test card sends the browser to okUrl at once and posts the callback
`settings.sandbox_cmi_late_seconds` later, from a background task: the okUrl page must never
take the browser's return as a payment.

`pay_reference(...)` is the counter as a function, for tests and for `fatoura sandbox pay`.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import html
import json
import logging
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from core.config import Settings, get_settings
from core.errors import N_, InvalidAmount
from core.i18n import Translator, pick_language, translator
from core.money import parse_amount
from core.payments.amanpay import (
    AMANPAY_CODE,
    METHODS,
    AmanpayGateway,
    format_tashilat_code,
    is_tashilat_code,
)
from core.payments.base import MalformedCallback
from core.payments.cmi import (
    CMI_TIMEZONE,
    CURRENCY_MAD,
    HASH_ALGORITHM,
    STORETYPE,
    CmiGateway,
    ascii_lower,
    field,
    parse_form,
)
from core.payments.common import digits_only, format_amount, luhn_valid, parse_wire_amount
from core.payments.fatourati import FATOURATI_CODE, FatouratiGateway, is_reference
from core.payments.registry import sandbox_cmi, sandbox_key

log = logging.getLogger("fatoura.sandbox.gateways")

router = APIRouter(prefix="/sandbox", include_in_schema=False)

CALLBACK_TIMEOUT = 10.0
_BACKGROUND: set[asyncio.Task] = set()  # late callbacks in flight (a reference keeps them alive)
_PAID_OIDS_CAP = 10_000

# --- Test cards -----------------------------------------------------------------------------

APPROVED = "approved"
DECLINED = "declined"
THREE_DS_FAILED = "3ds_failed"
INSUFFICIENT_FUNDS = "insufficient_funds"
LATE_CALLBACK = "late_callback"
UNKNOWN_CARD = "unknown_card"


@dataclass(frozen=True)
class TestCard:
    pan: str
    outcome: str
    label: str  # msgid

    @property
    def display(self) -> str:
        return " ".join(self.pan[i:i + 4] for i in range(0, len(self.pan), 4))


TEST_CARDS = (  # all Luhn-valid; any future expiry date and any CVV
    TestCard("4000000000000002", APPROVED, N_("Approved")),
    TestCard("5100000000000008", APPROVED, N_("Approved")),
    TestCard("4000000000000010", DECLINED, N_("Declined by the bank")),
    TestCard("4000000000000028", THREE_DS_FAILED, N_("3-D Secure authentication fails")),
    TestCard("4000000000000036", INSUFFICIENT_FUNDS, N_("Insufficient funds.")),
    TestCard("4000000000000044", LATE_CALLBACK, N_("Approved, but the notification arrives late (timeout)")),
)
TEST_CARD_BY_PAN = {card.pan: card for card in TEST_CARDS}

# outcome -> (ProcReturnCode or None, Response, mdStatus, ErrMsg): what CMI posts back.
RESULTS = {
    APPROVED: ("00", "Approved", "1", ""),
    LATE_CALLBACK: ("00", "Approved", "1", ""),
    DECLINED: ("05", "Declined", "1", "Do not honour"),
    INSUFFICIENT_FUNDS: ("51", "Declined", "1", "Insufficient funds"),
    THREE_DS_FAILED: (None, "Error", "0", "3-D Secure authentication failed"),
    UNKNOWN_CARD: ("14", "Declined", "1", "Invalid card number"),
}


def mask_pan(pan: str) -> str:
    """'4000000000000002' -> '400000***0002' (CMI's MaskedPan)."""
    return f"{pan[:6]}***{pan[-4:]}"


# --- Pages ------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans Arabic",sans-serif;background:#f3f5f8;
margin:0;color:#1d2733}
.banner{background:#fff3cd;color:#6b4e00;text-align:center;padding:.5em;font-size:.9em}
main{max-width:34em;margin:1.5em auto;background:#fff;border-radius:10px;padding:1.5em;
box-shadow:0 2px 12px rgba(0,0,0,.08)}
h1{font-size:1.35em;margin:0 0 .2em}h2{font-size:1.05em;margin-top:1.6em}
.muted{color:#66758a;font-size:.9em;margin-top:0}
dl{display:grid;grid-template-columns:auto 1fr;gap:.3em 1em}dt{color:#66758a}dd{margin:0;font-weight:600}
label{display:block;margin:.8em 0 .2em}input,select{width:100%;box-sizing:border-box;padding:.55em;font-size:1em;
border:1px solid #c5ced9;border-radius:6px}.row{display:flex;gap:1em}.row label{flex:1}
button{margin-top:1.2em;width:100%;padding:.75em;font-size:1em;border:0;border-radius:6px;background:#0b5cad;
color:#fff;cursor:pointer}button.secondary{background:#e4e9f0;color:#1d2733}
.error{background:#fde8e8;color:#8a1c1c;padding:.7em;border-radius:6px}
.ok{background:#e6f5ea;color:#1c5e2c;padding:.7em;border-radius:6px}
table{width:100%;border-collapse:collapse;font-size:.92em}td{padding:.35em;border-top:1px solid #e4e9f0}
td.pan{font-family:ui-monospace,monospace;white-space:nowrap;direction:ltr}
.use{margin:0;width:auto;padding:.25em .6em;font-size:.85em}
a.cancel{display:block;text-align:center;margin-top:1em;color:#66758a}
.ltr{direction:ltr;unicode-bidi:embed}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _page(t: Translator, title: str, body: str, status: int = 200) -> HTMLResponse:
    direction = "rtl" if t.rtl else "ltr"
    banner = t._("Test environment: no real payment is made.")
    document = (
        f'<!doctype html><html lang="{t.language}" dir="{direction}"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><meta name="robots" content="noindex">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f'<div class="banner">{_e(banner)}</div>'
        f"<main>{body}</main></body></html>"
    )
    return HTMLResponse(document, status_code=status, headers={"Cache-Control": "no-store",
                                                               "Referrer-Policy": "no-referrer"})


def _error_page(t: Translator, message: str, status: int = 400) -> HTMLResponse:
    title = t._("Payment error")
    return _page(t, title, f'<h1>{_e(title)}</h1><p class="error">{_e(message)}</p>', status)


def _hidden(fields: dict[str, str]) -> str:
    return "".join(f'<input type="hidden" name="{_e(k)}" value="{_e(v)}">' for k, v in fields.items())


def _settings(request: Request) -> Settings:
    settings = getattr(getattr(request.app.state, "fatoura", None), "settings", None)
    return settings if settings is not None else get_settings()


def _web_url(url: str | None) -> bool:
    if not url or len(url) > 2048:
        return False
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


async def _read_form(request: Request) -> dict[str, str]:
    return parse_form(await request.body(), request.headers.get("content-type", ""))


# --- The CMI hosted page ----------------------------------------------------------------------


def _check_request(gateway: CmiGateway, fields: dict[str, str], t: Translator) -> str | None:
    """Why CMI would refuse this form (a translated message), or None."""
    if not gateway.verify_request(fields):
        return t._("The payment request could not be verified (wrong hash). No payment was made.")
    if field(fields, "clientid") != gateway.client_id:
        return t._("Unknown merchant.")
    if (field(fields, "storetype") or "").upper() != STORETYPE or field(fields, "hashAlgorithm") != HASH_ALGORITHM:
        return t._("This payment model is not supported.")
    if field(fields, "currency") != CURRENCY_MAD:
        return t._("This currency is not supported.")
    try:
        amount = parse_wire_amount(field(fields, "amount"))
    except MalformedCallback:
        amount = Decimal(0)
    if amount <= 0:
        return t._("The amount is not valid.")
    if not (field(fields, "oid") or "").strip():
        return t._("The order number is missing.")
    if not all(_web_url(field(fields, name)) for name in ("okUrl", "failUrl", "callbackUrl")):
        return t._("The return addresses are not valid.")
    return None


def _encode_request(fields: dict[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(fields.items())).encode("utf-8")).decode("ascii")


def _decode_request(value: str | None) -> dict[str, str] | None:
    try:
        pairs = json.loads(base64.urlsafe_b64decode((value or "").encode("ascii")).decode("utf-8"))
        if isinstance(pairs, list) and all(isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p)
                                           for p in pairs):
            return dict(pairs)
    except (ValueError, binascii.Error, UnicodeError, RecursionError):
        pass
    return None


def _card_page(t: Translator, fields: dict[str, str], error: str | None = None) -> HTMLResponse:
    amount = t.amount(parse_wire_amount(field(fields, "amount")))
    title = t._("Secure card payment")
    # Babel does not look inside f-strings: every msgid is translated here, outside them.
    text = {"use": t._("Use"), "cancel": t._("Cancel and return to the merchant"), "merchant": t._("Merchant"),
            "order": t._("Order"), "amount": t._("Amount"), "pan": t._("Card number"),
            "exp": t._("Expiry date (MM/YY)"), "cvv": t._("CVV"), "pay": t._("Pay {amount}", amount=amount),
            "cards": t._("Test cards"), "hint": t._("Any future expiry date and any CVV.")}
    text = {key: _e(value) for key, value in text.items()}
    cards = "".join(
        f'<tr><td class="pan">{card.display}</td><td>{_e(t._(card.label))}</td>'
        f'<td><button type="button" class="use secondary" data-pan="{card.pan}">{text["use"]}</button></td></tr>'
        for card in TEST_CARDS)
    cancel = field(fields, "shopurl") or field(fields, "failUrl")
    cancel_link = f'<a class="cancel" href="{_e(cancel)}">{text["cancel"]}</a>' if _web_url(cancel) else ""
    body = f"""
<h1>{_e(title)}</h1><p class="muted">CMI · 3-D Secure</p>
<dl><dt>{text["merchant"]}</dt><dd class="ltr">{_e(field(fields, "clientid"))}</dd>
<dt>{text["order"]}</dt><dd class="ltr">{_e(field(fields, "oid"))}</dd>
<dt>{text["amount"]}</dt><dd>{_e(amount)}</dd></dl>
{f'<p class="error" role="alert">{_e(error)}</p>' if error else ''}
<form method="post" action="/sandbox/cmi/pay" autocomplete="off">
<input type="hidden" name="_request" value="{_encode_request(fields)}">
<label for="pan">{text["pan"]}</label>
<input id="pan" name="pan" inputmode="numeric" autocomplete="off" maxlength="23" required class="ltr">
<div class="row"><label>{text["exp"]}
<input name="exp" inputmode="numeric" autocomplete="off" maxlength="5" placeholder="12/30" class="ltr"></label>
<label>{text["cvv"]}<input name="cvv" inputmode="numeric" autocomplete="off" maxlength="4" class="ltr">
</label></div>
<button type="submit" id="pay">{text["pay"]}</button>
</form>{cancel_link}
<h2>{text["cards"]}</h2>
<p class="muted">{text["hint"]}</p>
<table>{cards}</table>
<script>document.querySelectorAll("button[data-pan]").forEach(function(b){{b.addEventListener("click",
function(){{document.getElementById("pan").value=b.dataset.pan;}});}});</script>"""
    return _page(t, title, body)


@router.post("/cmi/est3Dgate")
async def cmi_hosted_page(request: Request) -> HTMLResponse:
    """CMI's 3D Pay Hosting page: the merchant's signed form in, the card form out."""
    try:
        fields = await _read_form(request)
    except MalformedCallback:
        return _error_page(translator("fr"), translator("fr")._("The payment request could not be read."))
    t = translator(pick_language(field(fields, "lang")))
    problem = _check_request(sandbox_cmi(_settings(request)), fields, t)
    if problem:
        return _error_page(t, problem)
    return _card_page(t, fields)


def _transaction_fields(request: Request, fields: dict[str, str], outcome: str, pan: str) -> dict[str, str]:
    """The callback CMI posts: the request's fields (CMI's casing) + the result, without HASH."""
    out: dict[str, str] = {}
    for name, value in fields.items():
        folded = ascii_lower(name)
        if folded == "hash":
            continue
        if folded == "callbackurl":
            name = "CallbackURL"
        elif folded == "trantype":
            name = "trantype"
        elif folded == "storetype":
            value = value.lower()
        out[name] = value
    proc, response, md_status, err = RESULTS[outcome]
    now = datetime.now(CMI_TIMEZONE)
    digits = string.digits
    oid = field(fields, "oid") or ""
    out.update({
        "ReturnOid": oid,
        "TransId": f"{now:%y%j}" + "".join(secrets.choice(string.ascii_uppercase + digits) for _ in range(9)),
        "AuthCode": "".join(secrets.choice(digits) for _ in range(6)) if proc == "00" else "",
        "HostRefNum": "".join(secrets.choice(digits) for _ in range(12)),
        "acqStan": "".join(secrets.choice(digits) for _ in range(6)),
        "Response": response,
        "mdStatus": md_status,
        "ErrMsg": err,
        "EXTRA.TRXDATE": now.strftime("%Y%m%d %H:%M:%S"),
        "EXTRA.CARDBRAND": "MASTERCARD" if pan.startswith("5") else "VISA",
        "MaskedPan": mask_pan(pan),
        "maskedCreditCard": f"{pan[:4]} {pan[4:6]}** **** {pan[-4:]}",
        "paymentType": "CARD",
        "callbackCall": "true",
        "clientIp": request.client.host if request.client else "",
        "rnd": secrets.token_urlsafe(15),
    })
    if proc is not None:
        out["ProcReturnCode"] = proc
    return out


async def post_cmi_callback(url: str, fields: dict[str, str], timeout: float = CALLBACK_TIMEOUT) -> str | None:
    """POST a CMI callback (form-encoded); the merchant's answer text, None if unreachable."""
    try:
        async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
            response = await client.post(url, content=urlencode(list(fields.items())).encode("ascii"),
                                         headers={"content-type": "application/x-www-form-urlencoded"})
        return response.text
    except httpx.HTTPError as error:
        log.warning("sandbox CMI: callback to %s failed: %s", url, type(error).__name__)
        return None


async def _late_callback(url: str, fields: dict[str, str], delay: float) -> None:
    await asyncio.sleep(delay)
    await post_cmi_callback(url, fields)


def _autopost_page(t: Translator, target: str, fields: dict[str, str]) -> HTMLResponse:
    """The browser's return to okUrl / failUrl: a form POSTed by script, a button without it."""
    title = t._("Returning to the merchant…")
    label = t._("Continue")
    body = (f"<h1>{_e(title)}</h1>"
            f'<form id="back" method="post" action="{_e(target)}">{_hidden(fields)}'
            f'<noscript><button type="submit">{_e(label)}</button></noscript></form>'
            '<script>document.getElementById("back").submit();</script>')
    return _page(t, title, body)


@router.post("/cmi/pay")
async def cmi_pay(request: Request) -> HTMLResponse:
    """The card form: never stores or logs the card number, only maps it to a test outcome."""
    settings = _settings(request)
    gateway = sandbox_cmi(settings)
    try:
        form = await _read_form(request)
    except MalformedCallback:
        t = translator("fr")
        return _error_page(t, t._("The payment request could not be read."))
    fields = _decode_request(form.get("_request"))
    t = translator(pick_language(field(fields or {}, "lang")))
    problem = _check_request(gateway, fields, t) if fields is not None else \
        t._("The payment request could not be read.")
    if problem:
        return _error_page(t, problem)
    pan = digits_only(form.pop("pan", ""))
    form.pop("cvv", None)
    form.pop("exp", None)
    if not (12 <= len(pan) <= 19 and luhn_valid(pan)):
        return _card_page(t, fields, error=t._("This card number is not valid."))
    card = TEST_CARD_BY_PAN.get(pan)
    outcome = card.outcome if card else UNKNOWN_CARD

    oid = field(fields, "oid") or ""
    paid: set[str] = getattr(request.app.state, "sandbox_cmi_paid", None) or set()
    request.app.state.sandbox_cmi_paid = paid
    if oid in paid:
        return _error_page(t, t._("This order has already been paid."))

    callback = gateway.sign_callback(_transaction_fields(request, fields, outcome, pan))
    del pan
    approved = callback.get("ProcReturnCode") == "00"
    ok_url, fail_url, callback_url = field(fields, "okUrl"), field(fields, "failUrl"), field(fields, "callbackUrl")
    if outcome == LATE_CALLBACK:
        task = asyncio.create_task(_late_callback(callback_url, callback, settings.sandbox_cmi_late_seconds))
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)
        target = ok_url
    else:
        answer = await post_cmi_callback(callback_url, callback)
        captured = approved and (answer or "").strip().upper().startswith("ACTION=POSTAUTH")
        target = ok_url if captured else fail_url
    if approved and target == ok_url:
        if len(paid) >= _PAID_OIDS_CAP:
            paid.clear()
        paid.add(oid)
    return _autopost_page(t, target, callback)


# --- The agency counter: Fatourati references and Tashilat codes --------------------------------


@dataclass(frozen=True)
class CounterResult:
    status: int | None  # the merchant's HTTP status; None when it could not be reached
    body: str
    payload: dict[str, Any]

    @property
    def accepted(self) -> bool:
        return self.status == 200


def gateway_for_reference(reference: str) -> str:
    """'fatourati' for a 13-digit reference, 'amanpay' for a 12-digit Tashilat code (spaces and
    dashes ignored); ValueError otherwise. For a CLI that is given only the reference."""
    digits = digits_only(reference)
    if is_reference(digits):
        return FATOURATI_CODE
    if is_tashilat_code(digits):
        return AMANPAY_CODE
    raise ValueError("a Fatourati reference has 13 digits, a Tashilat code 12")


def _gateway_name(gateway: str | None, reference: str = "") -> str:
    if gateway in (None, "", "auto"):
        return gateway_for_reference(reference)
    name = gateway.strip().lower()
    if name in ("tashilat", AMANPAY_CODE):
        return AMANPAY_CODE
    if name == FATOURATI_CODE:
        return FATOURATI_CODE
    raise ValueError(f"the counter pays 'fatourati' references or 'amanpay' (Tashilat) codes, not {gateway!r}")


def counter_payload(gateway: str | None, reference: str, amount: Decimal | str, *, when: datetime | None = None,
                    approved: bool = True, method: str = "tashilat", now: datetime | None = None) -> dict[str, Any]:
    """The callback body the gateway would send for a payment taken at `when` (default now)."""
    gateway = _gateway_name(gateway, reference)
    now = now or datetime.now(timezone.utc)
    paid_at = (when or now).astimezone(CMI_TIMEZONE).isoformat(timespec="seconds")
    total = format_amount(parse_amount(amount) if not isinstance(amount, Decimal) else amount)
    reference = digits_only(reference)
    if gateway == FATOURATI_CODE:
        if not is_reference(reference):
            raise ValueError("a Fatourati reference has 13 digits")
        return {"tokenRef": reference, "orderId": None, "totalAmount": total, "currency": "504",
                "selectedItems": [], "fatouratiTransactionNumber": f"SBX{secrets.randbelow(10**12):012d}",
                "channel": "CASHPLUS", "operator": "SANDBOX COUNTER", "decisionCode": 0 if approved else 1,
                "paidAt": paid_at, "timestamp": int(now.timestamp())}
    if not is_tashilat_code(reference):
        raise ValueError("a Tashilat code has 12 digits")
    if method not in METHODS:
        raise ValueError(f"unknown Amanpay method {method!r}")
    return {"code": reference, "orderId": None, "transactionId": f"AMP{secrets.randbelow(10**12):012d}",
            "amount": total, "currency": "MAD", "method": method, "status": "paid" if approved else "refused",
            "paidAt": paid_at, "timestamp": int(now.timestamp())}


async def pay_reference(app_base_url: str, gateway: str | None, reference: str, amount: Decimal | str, *,
                        when: datetime | None = None, late: bool = False, approved: bool = True,
                        method: str = "tashilat", settings: Settings | None = None, key: str | None = None,
                        timeout: float = CALLBACK_TIMEOUT) -> CounterResult:
    """Take the payment of a Fatourati reference (gateway "fatourati") or a Tashilat code
    ("amanpay" / "tashilat"; None: told apart by the number of digits) at the sandbox counter: POST the signed callback to
    `{app_base_url}/webhooks/payments/{gateway}` and return the merchant's answer.

    `amount` is what the agent typed (a wrong one is sent as typed). `when` is the payment time
    (default now); `late=True` dates it one hour after the longest expiry a reference issued now
    can have (fatourati_expiry_hours / amanpay_expiry_hours), i.e. after its expiry. The
    confirmation service decides what happens. Keys: `key`, else the sandbox key of `settings`
    (default: the environment's). Raises ValueError / InvalidAmount for a bad reference or amount.
    """
    name = _gateway_name(gateway, reference)
    settings = settings or get_settings()
    now = datetime.now(timezone.utc)
    if late and when is None:
        hours = settings.fatourati_expiry_hours if name == FATOURATI_CODE else settings.amanpay_expiry_hours
        when = now + timedelta(hours=hours + 1)
    payload = counter_payload(name, reference, amount, when=when, approved=approved, method=method, now=now)
    body = json.dumps(payload).encode("utf-8")
    key = key or sandbox_key(settings, name)
    signer = FatouratiGateway(key, app_base_url, sandbox=True) if name == FATOURATI_CODE \
        else AmanpayGateway(key, app_base_url, sandbox=True)
    url = f"{app_base_url.rstrip('/')}/webhooks/payments/{name}"
    try:
        async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
            response = await client.post(url, content=body, headers=signer.sign(body))
    except httpx.HTTPError as error:
        log.warning("sandbox counter: callback to %s failed: %s", url, type(error).__name__)
        return CounterResult(None, "", payload)
    return CounterResult(response.status_code, response.text[:2000], payload)


def _result_html(t: Translator, result: CounterResult) -> str:
    if result.status is None:
        unreachable = t._("The merchant could not be reached.")
        return f'<p class="error" role="status">{_e(unreachable)}</p>'
    if result.accepted:
        text = t._("The merchant accepted the payment (HTTP {status}).", status=result.status)
        css = "ok"
    else:
        text = t._("The merchant refused the payment (HTTP {status}).", status=result.status)
        css = "error"
    return f'<p class="{css}" role="status">{_e(text)}<br><code class="ltr">{_e(result.body)}</code></p>'


def _counter_page(t: Translator, values: dict[str, str], notice: str = "") -> HTMLResponse:
    title = t._("Agency counter (test)")
    gateway = values.get("gateway", FATOURATI_CODE)
    options = "".join(
        f'<option value="{code}"{" selected" if code == gateway else ""}>{_e(label)}</option>'
        for code, label in ((FATOURATI_CODE, t._("Fatourati reference (13 digits)")),
                            (AMANPAY_CODE, t._("Tashilat cash code (12 digits)"))))
    late = " checked" if values.get("late") else ""
    text = {"intro": t._("Take the cash payment of a Fatourati reference or a Tashilat code, as an agency would."),
            "type": t._("Payment type"), "reference": t._("Reference or code"), "amount": t._("Amount paid (MAD)"),
            "late": t._("Paid after the expiry"), "submit": t._("Take the payment")}
    text = {key: _e(value) for key, value in text.items()}
    body = f"""
<h1>{_e(title)}</h1>
<p class="muted">{text["intro"]}</p>
{notice}
<form method="post" action="/sandbox/counter?lang={t.language}">
<label for="gateway">{text["type"]}</label><select id="gateway" name="gateway">{options}</select>
<label for="reference">{text["reference"]}</label>
<input id="reference" name="reference" inputmode="numeric" required class="ltr" value="{_e(values.get('reference', ''))}">
<label for="amount">{text["amount"]}</label>
<input id="amount" name="amount" inputmode="decimal" required class="ltr" value="{_e(values.get('amount', ''))}">
<label><input type="checkbox" name="late" value="1" style="width:auto"{late}> {text["late"]}</label>
<button type="submit">{text["submit"]}</button>
</form>"""
    return _page(t, title, body)


@router.get("/counter")
async def counter_form(request: Request) -> HTMLResponse:
    return _counter_page(translator(pick_language(request.query_params.get("lang"))), {})


@router.post("/counter")
async def counter_pay(request: Request) -> HTMLResponse:
    t = translator(pick_language(request.query_params.get("lang")))
    try:
        values = await _read_form(request)
    except MalformedCallback:
        unreadable = t._("The form could not be read.")
        return _counter_page(t, {}, f'<p class="error">{_e(unreadable)}</p>')
    settings = _settings(request)
    try:
        result = await pay_reference(settings.public_base_url, values.get("gateway", ""), values.get("reference", ""),
                                     values.get("amount", ""), late=bool(values.get("late")), settings=settings)
    except (ValueError, InvalidAmount):
        check = t._("Check the reference and the amount.")
        notice = f'<p class="error">{_e(check)}</p>'
        return _counter_page(t, values, notice)
    return _counter_page(t, values, _result_html(t, result))


# --- Amanpay's card / PayDirect / Amanty pages ----------------------------------------------------

_METHOD_NAMES = {"card": N_("Card"), "paydirect": "PayDirect", "amanty": "Amanty"}


def _amanpay_args(request: Request, method: str) -> tuple[str, Decimal] | None:
    code = digits_only(request.query_params.get("code", ""))
    try:
        amount = parse_amount(request.query_params.get("amount", ""))
    except InvalidAmount:
        return None
    if method not in _METHOD_NAMES or not is_tashilat_code(code):
        return None
    return code, amount


def _amanpay_page(t: Translator, method: str, code: str, amount: Decimal, notice: str = "") -> HTMLResponse:
    title = "Amanpay · " + t._(_METHOD_NAMES[method])
    query = urlencode({"code": code, "amount": format_amount(amount), "lang": t.language})
    text = {"code": t._("Payment code"), "amount": t._("Amount"), "pay": t._("Pay {amount}", amount=t.amount(amount)),
            "refuse": t._("Refuse the payment")}
    text = {key: _e(value) for key, value in text.items()}
    body = f"""
<h1>{_e(title)}</h1>
<dl><dt>{text["code"]}</dt><dd class="ltr">{_e(format_tashilat_code(code))}</dd>
<dt>{text["amount"]}</dt><dd>{_e(t.amount(amount))}</dd></dl>
{notice}
<form method="post" action="/sandbox/amanpay/{method}?{_e(query)}">
<button type="submit" name="decision" value="paid">{text["pay"]}</button>
<button type="submit" name="decision" value="refused" class="secondary">{text["refuse"]}</button>
</form>"""
    return _page(t, title, body)


@router.get("/amanpay/{method}")
async def amanpay_page(request: Request, method: str) -> HTMLResponse:
    t = translator(pick_language(request.query_params.get("lang")))
    args = _amanpay_args(request, method)
    if args is None:
        return _error_page(t, t._("This payment link is not valid."), 404)
    return _amanpay_page(t, method, *args)


@router.post("/amanpay/{method}")
async def amanpay_pay(request: Request, method: str) -> HTMLResponse:
    t = translator(pick_language(request.query_params.get("lang")))
    args = _amanpay_args(request, method)
    if args is None:
        return _error_page(t, t._("This payment link is not valid."), 404)
    try:
        form = await _read_form(request)
    except MalformedCallback:
        form = {}
    settings = _settings(request)
    code, amount = args
    result = await pay_reference(settings.public_base_url, AMANPAY_CODE, code, amount, method=method,
                                 approved=form.get("decision") != "refused", settings=settings)
    return _amanpay_page(t, method, code, amount, _result_html(t, result))


__all__ = ["router", "pay_reference", "gateway_for_reference", "counter_payload", "CounterResult", "TEST_CARDS", "mask_pan",
           "post_cmi_callback"]
