"""CMI card payments, "3D Pay Hosting": the signed form, the ver3 hash, the callback, CMI's answers.

The customer's browser POSTs a form to CMI's hosted 3-D Secure page (CMI takes no GET link), so
the chat links to our `/pay/{token}` page, which renders `CmiGateway.form_fields(...)` as an
auto-submitting form to `CmiGateway.gateway_url`. CMI then POSTs its server-to-server callback
(form-encoded, same ver3 hash) to `/webhooks/payments/cmi`, and sends the browser to okUrl or
failUrl. Nothing is marked paid from the browser's return.

The ver3 hash (../shared/reference/payments.md, checked against the PHP merchant kit's vectors):
every posted field name except `hash` and `encoding` (any case), ordered as PHP's `natcasesort`
orders them; their values (request: PHP-trimmed; callback: the kit's
`html_entity_decode(preg_replace("/\\n$/", "", v))`, not trimmed), each with `\\` then `|`
escaped, joined with `|`, then `|` and the escaped store key; SHA-512, Base64 (88 characters).

Not confirmed by CMI, kept small and replaceable here: the timezone of EXTRA.TRXDATE (read as
Africa/Casablanca), and that an approved payment is `ProcReturnCode=00` with `Response=Approved`
whatever mdStatus says.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import html
import re
import secrets
import string
from collections.abc import Iterable, Mapping
from datetime import datetime
from functools import cmp_to_key
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from core.payments.base import (
    CHANNEL_CARD,
    OUTCOME_APPLIED,
    OUTCOME_DECLINED,
    OUTCOME_DUPLICATE,
    Answer,
    CallbackRequest,
    CheckoutView,
    ForgedCallback,
    Instruction,
    MalformedCallback,
    PaymentEvent,
)
from core.payments.common import MAX_CALLBACK_BYTES, format_amount, parse_wire_amount, utcnow, wire_id

CMI_CODE = "cmi"
CURRENCY_MAD = "504"
STORETYPE = "3D_PAY_HOSTING"
TRANTYPE = "PreAuth"
HASH_ALGORITHM = "ver3"
HASH_EXCLUDED = frozenset({"hash", "encoding"})
LANGUAGES = ("fr", "ar", "en")
MAX_FIELDS = 300
CMI_TIMEZONE = ZoneInfo("Africa/Casablanca")

_PHP_TRIM = " \t\n\r\0\x0b"  # what PHP's trim() strips: not Unicode spaces
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def ascii_lower(text: str) -> str:
    """PHP 8's strtolower: ASCII letters only."""
    return text.translate(_ASCII_LOWER)


# --- PHP natcasesort -----------------------------------------------------------------------
# A port of PHP's strnatcmp_ex (ext/standard/strnatcmp.c) with is_case_insensitive, on the UTF-8
# bytes; PHP 8's sort is stable, so equal names keep their posted order (so does `sorted`).


def _isdigit(c: int) -> bool:
    return 48 <= c <= 57


def _isspace(c: int) -> bool:
    return c in (32, 9, 10, 11, 12, 13)


def _upper(c: int) -> int:
    return c - 32 if 97 <= c <= 122 else c


def _compare_right(a: bytes, alen: int, ap: int, b: bytes, blen: int, bp: int) -> tuple[int, int, int]:
    """Right-aligned digit runs: the longest wins, else the first difference (kept in `bias`)."""
    bias = 0
    while True:
        a_end = ap >= alen or not _isdigit(a[ap])
        b_end = bp >= blen or not _isdigit(b[bp])
        if a_end and b_end:
            return bias, ap, bp
        if a_end:
            return -1, ap, bp
        if b_end:
            return 1, ap, bp
        if a[ap] < b[bp]:
            bias = bias or -1
        elif a[ap] > b[bp]:
            bias = bias or 1
        ap += 1
        bp += 1


def _compare_left(a: bytes, alen: int, ap: int, b: bytes, blen: int, bp: int) -> tuple[int, int, int]:
    """Left-aligned digit runs (one starts with 0, a "fraction"): the first difference wins."""
    while True:
        a_end = ap >= alen or not _isdigit(a[ap])
        b_end = bp >= blen or not _isdigit(b[bp])
        if a_end and b_end:
            return 0, ap, bp
        if a_end:
            return -1, ap, bp
        if b_end:
            return 1, ap, bp
        if a[ap] != b[bp]:
            return (-1 if a[ap] < b[bp] else 1), ap, bp
        ap += 1
        bp += 1


def natcasecmp(left: str, right: str) -> int:
    """PHP's strnatcasecmp: -1, 0 or 1."""
    a = left.encode("utf-8", "surrogatepass")
    b = right.encode("utf-8", "surrogatepass")
    alen, blen = len(a), len(b)
    if alen == 0 or blen == 0:
        return (alen > blen) - (alen < blen)
    a += b"\0"  # C strings end with a NUL, which the loops below may read
    b += b"\0"
    ap = bp = 0
    leading = True
    while True:
        ca, cb = a[ap], b[bp]
        if leading:  # skip leading zeros of the whole string
            while ca == 48 and ap + 1 < alen and _isdigit(a[ap + 1]):
                ap += 1
                ca = a[ap]
            while cb == 48 and bp + 1 < blen and _isdigit(b[bp + 1]):
                bp += 1
                cb = b[bp]
            leading = False
        while _isspace(ca):
            ap += 1
            ca = a[ap]
        while _isspace(cb):
            bp += 1
            cb = b[bp]
        if _isdigit(ca) and _isdigit(cb):
            compare = _compare_left if (ca == 48 or cb == 48) else _compare_right
            result, ap, bp = compare(a, alen, ap, b, blen, bp)
            if result:
                return result
            if ap == alen and bp == blen:
                return 0
            if ap == alen:
                return -1
            if bp == blen:
                return 1
            ca, cb = a[ap], b[bp]
        ca, cb = _upper(ca), _upper(cb)
        if ca != cb:
            return -1 if ca < cb else 1
        ap += 1
        bp += 1
        if ap >= alen and bp >= blen:
            return 0
        if ap >= alen:
            return -1
        if bp >= blen:
            return 1


def natcasesorted(names: Iterable[str]) -> list[str]:
    """The names in the order PHP's natcasesort leaves them (stable for equal names)."""
    return sorted(names, key=cmp_to_key(natcasecmp))


# --- The ver3 hash ----------------------------------------------------------------------------


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("|", "\\|")


def _hash_value(value: str, side: str) -> str:
    if side == "request":
        return value.strip(_PHP_TRIM)
    # The kit: html_entity_decode(preg_replace("/\n$/", "", $value), ENT_QUOTES, "UTF-8").
    # Python's `$` matches like PCRE's (at the end, or before a final newline), so re.sub removes
    # exactly what preg_replace removes. html.unescape also knows HTML5 entities and a few
    # semicolon-less ones that PHP's HTML 4.01 table does not: only odd values differ.
    return html.unescape(re.sub(r"\n$", "", value))


def cmi_hash_plaintext(params: Mapping[str, str], store_key: str, side: str = "request") -> str:
    """The `|`-joined string that is hashed (for tests and for debugging a mismatch)."""
    if side not in ("request", "callback"):
        raise ValueError(f"side is 'request' or 'callback', not {side!r}")
    names = [name for name in params if ascii_lower(name) not in HASH_EXCLUDED]
    parts = [_escape(_hash_value(str(params[name]), side)) for name in natcasesorted(names)]
    parts.append(_escape(store_key))
    return "|".join(parts)


def cmi_hash(params: Mapping[str, str], store_key: str, side: str = "request") -> str:
    """CMI's ver3 hash of posted fields: Base64 of the SHA-512 of the plaintext (88 characters)."""
    plaintext = cmi_hash_plaintext(params, store_key, side)
    return base64.b64encode(hashlib.sha512(plaintext.encode("utf-8", "surrogatepass")).digest()).decode("ascii")


def hash_matches(params: Mapping[str, str], store_key: str, given: str, side: str) -> bool:
    """Constant-time comparison of `given` with the hash of `params`."""
    expected = cmi_hash(params, store_key, side).encode("ascii")
    return hmac.compare_digest(expected, str(given).encode("utf-8", "surrogatepass"))


def hash_field(params: Mapping[str, str]) -> str | None:
    """The posted HASH (whatever its case)."""
    for name, value in params.items():
        if ascii_lower(name) == "hash":
            return value
    return None


def field(params: Mapping[str, str], name: str) -> str | None:
    """A posted field by name, exact case first, else ignoring case (CMI's casing varies)."""
    if name in params:
        return params[name]
    wanted = ascii_lower(name)
    for key, value in params.items():
        if ascii_lower(key) == wanted:
            return value
    return None


def parse_form(body: bytes, content_type: str = "") -> dict[str, str]:
    """An application/x-www-form-urlencoded body -> fields in posted order; MalformedCallback
    for anything else, for duplicate names, for bad percent-escapes or UTF-8."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media and media != "application/x-www-form-urlencoded":
        raise MalformedCallback(f"content type {media!r}")
    if not isinstance(body, (bytes, bytearray)) or len(body) > MAX_CALLBACK_BYTES:
        raise MalformedCallback("body missing or too large")
    try:
        text = bytes(body).decode("ascii")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True, encoding="utf-8",
                          errors="strict", max_num_fields=MAX_FIELDS)
    except ValueError as error:  # UnicodeDecodeError is a ValueError
        raise MalformedCallback("not a form body") from error
    fields: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in pairs:
        folded = ascii_lower(name)
        if name in fields or (folded == "hash" and folded in seen):
            raise MalformedCallback("a field is posted twice")
        seen.add(folded)
        fields[name] = value
    return fields


# --- The gateway ----------------------------------------------------------------------------


class CmiGateway:
    """CMI card payments through the 3D Pay Hosting page (see the module docstring)."""

    code = CMI_CODE
    channels = (CHANNEL_CARD,)
    where_to_pay: tuple[str, ...] = ()

    def __init__(self, client_id: str, store_key: str, gateway_url: str, public_base_url: str,
                 sandbox: bool = False, *, session_timeout: int = 1800) -> None:
        if not client_id or not store_key:
            raise ValueError("CMI needs a client id and a store key")
        if not 30 <= session_timeout <= 2700:
            raise ValueError("CMI's sessionTimeout is 30 to 2700 seconds")
        self.client_id = client_id
        self._store_key = store_key
        self.gateway_url = gateway_url
        self.public_base_url = public_base_url.rstrip("/")
        self.sandbox = sandbox
        self.session_timeout = session_timeout

    def __repr__(self) -> str:  # never the store key
        return f"CmiGateway(client_id={self.client_id!r}, gateway_url={self.gateway_url!r}, sandbox={self.sandbox})"

    @property
    def callback_url(self) -> str:
        return f"{self.public_base_url}/webhooks/payments/{self.code}"

    def pay_url(self, token: str) -> str:
        return f"{self.public_base_url}/pay/{token}"

    def form_fields(self, checkout: CheckoutView, ok_url: str, fail_url: str, callback_url: str | None = None,
                    shop_url: str | None = None, *, rnd: str | None = None) -> dict[str, str]:
        """The fields of the form our /pay/{token} page posts to `gateway_url`, HASH last.

        callback_url defaults to `{public_base_url}/webhooks/payments/cmi`, shop_url (CMI's
        "cancel" link) to fail_url. BillToName and email are sent when known. Values are trimmed
        before hashing, so what is posted is what was hashed.
        """
        lang = checkout.language if checkout.language in LANGUAGES else "fr"
        fields = {
            "clientid": self.client_id,
            "storetype": STORETYPE,
            "TranType": TRANTYPE,
            "amount": format_amount(checkout.amount),
            "currency": CURRENCY_MAD,
            "oid": checkout.order_id,
            "okUrl": ok_url,
            "failUrl": fail_url,
            "callbackUrl": callback_url or self.callback_url,
            "shopurl": shop_url or fail_url,
            "lang": lang,
            "rnd": rnd or secrets.token_hex(10),
            "hashAlgorithm": HASH_ALGORITHM,
            "encoding": "UTF-8",
            "CallbackResponse": "true",
            "AutoRedirect": "true",
            "sessionTimeout": str(self.session_timeout),
        }
        if checkout.customer_name and checkout.customer_name.strip():
            fields["BillToName"] = checkout.customer_name.strip(_PHP_TRIM)[:255]
        if checkout.email and checkout.email.strip():
            fields["email"] = checkout.email.strip(_PHP_TRIM)
        fields = {name: str(value).strip(_PHP_TRIM) for name, value in fields.items()}
        fields["HASH"] = cmi_hash(fields, self._store_key, "request")
        return fields

    def verify_request(self, fields: Mapping[str, str]) -> bool:
        """Whether posted request fields carry our hash (the sandbox page checks this like CMI)."""
        given = hash_field(fields)
        return given is not None and hash_matches(fields, self._store_key, given, "request")

    def sign_callback(self, fields: Mapping[str, str]) -> dict[str, str]:
        """`fields` + the callback-side HASH (what CMI, or the sandbox, posts to callbackUrl)."""
        signed = {name: value for name, value in fields.items() if ascii_lower(name) != "hash"}
        signed["HASH"] = cmi_hash(signed, self._store_key, "callback")
        return signed

    async def start(self, checkout: CheckoutView, channel: str) -> Instruction:
        if channel != CHANNEL_CARD:
            raise ValueError(f"CMI card payments do not serve channel {channel!r}")
        format_amount(checkout.amount)  # refuse now what the form could not carry
        return Instruction(channel=CHANNEL_CARD, gateway=self.code, url=self.pay_url(checkout.token),
                           expires_at=checkout.expires_at, sandbox=self.sandbox)

    def verify_callback(self, request: CallbackRequest) -> PaymentEvent:
        fields = parse_form(request.body, request.content_type)
        given = hash_field(fields)
        if not given:
            raise ForgedCallback("no HASH")
        if not hash_matches(fields, self._store_key, given, "callback"):
            raise ForgedCallback("HASH mismatch")
        order_id = wire_id(field(fields, "oid") or field(fields, "ReturnOid"), "oid")
        amount = parse_wire_amount(field(fields, "amount"))
        proc = (field(fields, "ProcReturnCode") or "").strip()
        response = (field(fields, "Response") or "").strip()
        approved = proc == "00" and response == "Approved"
        trans_id = (field(fields, "TransId") or "").strip()
        transaction_id = wire_id(trans_id, "TransId") if trans_id else order_id
        reason = None
        if not approved:
            # Code first: the confirmation service reads the leading code to explain a decline.
            reason = " ".join(p for p in (proc, (field(fields, "ErrMsg") or "").strip()) if p) or response or None
        return PaymentEvent(gateway=self.code, transaction_id=transaction_id, amount=amount, approved=approved,
                            paid_at=_trxdate(field(fields, "EXTRA.TRXDATE")), order_id=order_id,
                            reason=reason[:200] if reason else None, raw=dict(fields))

    def answer(self, outcome: str, event: PaymentEvent | None = None) -> Answer:
        """CMI's contract: ACTION=POSTAUTH (capture; again for a duplicate), APPROVED (a decline
        acknowledged), FAILURE (rejected, held, or anything else). Always HTTP 200, plain text."""
        if outcome in (OUTCOME_APPLIED, OUTCOME_DUPLICATE):
            text = "ACTION=POSTAUTH"
        elif outcome == OUTCOME_DECLINED:
            text = "APPROVED"
        else:
            text = "FAILURE"
        return Answer(status=200, body=text.encode("ascii"), media_type="text/plain")


def _trxdate(value: str | None) -> datetime:
    """EXTRA.TRXDATE ('20240115 13:10:09', Moroccan time) -> aware datetime; now when absent."""
    if value:
        try:
            return datetime.strptime(value.strip(), "%Y%m%d %H:%M:%S").replace(tzinfo=CMI_TIMEZONE)
        except ValueError:
            pass
    return utcnow()
