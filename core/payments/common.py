"""Small pieces the gateways share: amounts on the wire, check digits, HMAC-signed JSON callbacks,
and the QR code image of a reference.

Everything here raises the protocol's errors: MalformedCallback for what cannot be read,
ForgedCallback for what cannot be trusted (bad or missing signature, stale timestamp).
"""
from __future__ import annotations

import hashlib
import hmac
import io
import json
import re
import secrets
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from core.identifiers import luhn_check_digit, luhn_valid  # noqa: F401 - luhn_valid re-exported for the gateways

__all__ = ["luhn_valid"]
from core.payments.base import CallbackRequest, ForgedCallback, MalformedCallback

MAX_CALLBACK_BYTES = 64 * 1024
REPLAY_WINDOW = timedelta(minutes=10)  # a signed JSON callback older (or further ahead) than this is refused

_AMOUNT_RE = re.compile(r"\d{1,13}(?:\.\d{1,2})?")
_ID_RE = re.compile(r"[A-Za-z0-9._:/-]{1,64}")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def format_amount(amount: Decimal) -> str:
    """'150.00': a dot and two decimals, as the gateways want it. Refuses anything that is not
    a positive Decimal with at most two decimals (rounding here would charge another amount)."""
    if not isinstance(amount, Decimal) or not amount.is_finite() or amount <= 0:
        raise ValueError(f"not a payable amount: {amount!r}")
    if amount != amount.quantize(Decimal("0.01")):
        raise ValueError(f"more than two decimals: {amount!r}")
    return f"{amount:.2f}"


def parse_wire_amount(value: object) -> Decimal:
    """An amount as a gateway posts it ('150.00', '150', 150, Decimal('150.5')) -> Decimal.
    No exponent, no sign, no NaN, at most 13 digits and 2 decimals: else MalformedCallback."""
    if isinstance(value, bool) or isinstance(value, float):
        raise MalformedCallback(f"amount of type {type(value).__name__}")
    if isinstance(value, (int, Decimal)):
        value = str(value)
    if not isinstance(value, str) or not _AMOUNT_RE.fullmatch(value.strip()):
        raise MalformedCallback("amount is not a decimal number")
    return Decimal(value.strip())


def wire_id(value: object, what: str) -> str:
    """A gateway's transaction number / order id: 1 to 64 plain characters."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise MalformedCallback(f"{what} missing")
    text = str(value).strip()
    if not _ID_RE.fullmatch(text):
        raise MalformedCallback(f"{what} is not a plain identifier")
    return text


# --- References ------------------------------------------------------------------------------


def random_reference(length: int) -> str:
    """`length` digits: a non-zero first digit, random digits (secrets), a Luhn check digit last.
    Not guessable (10^(length-2) * 9 draws), and a mistyped digit is caught by the check digit."""
    body = str(1 + secrets.randbelow(9)) + "".join(str(secrets.randbelow(10)) for _ in range(length - 2))
    return body + luhn_check_digit(body)


def digits_only(text: str) -> str:
    """'18 0857 637-947' -> '180857637947' (what an agent or a customer types)."""
    return re.sub(r"[\s.\-_/]", "", text or "")


# --- HMAC-signed JSON bodies ----------------------------------------------------------------


def hmac_hex(key: str, body: bytes) -> str:
    return hmac.new(key.encode("utf-8"), body, hashlib.sha256).hexdigest()


def header(request: CallbackRequest, name: str) -> str | None:
    name = name.lower()
    for key, value in (request.headers or {}).items():
        if isinstance(key, str) and key.lower() == name:
            return value
    return None


def check_hmac(key: str, body: bytes, given: str | None, *, prefix: str = "") -> None:
    """`given` must be `prefix` + the lower-hex HMAC-SHA256 of the raw body (constant-time compare)."""
    if not given or not isinstance(given, str):
        raise ForgedCallback("unsigned callback")
    given = given.strip()
    if prefix:
        if not given.lower().startswith(prefix):
            raise ForgedCallback("signature scheme not supported")
        given = given[len(prefix):]
    expected = hmac_hex(key, body).encode("ascii")
    if not hmac.compare_digest(expected, given.lower().encode("utf-8", "replace")):
        raise ForgedCallback("signature mismatch")


def load_json_object(request: CallbackRequest) -> dict:
    """The body as a JSON object (floats as Decimal), whatever the content type says."""
    body = request.body
    if not isinstance(body, (bytes, bytearray)) or len(body) > MAX_CALLBACK_BYTES:
        raise MalformedCallback("body missing or too large")
    try:
        data = json.loads(bytes(body).decode("utf-8"), parse_float=Decimal, parse_constant=_no_constant)
    except (ValueError, RecursionError) as error:
        raise MalformedCallback("not JSON") from error
    if not isinstance(data, dict):
        raise MalformedCallback("not a JSON object")
    return data


def json_safe(value: object, depth: int = 0) -> object:
    """A parsed body with Decimals as strings (raw callbacks are stored as JSON)."""
    if depth > 32:
        raise MalformedCallback("JSON nested too deep")
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v, depth + 1) for v in value]
    return value


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def check_timestamp(value: object, now: datetime, window: timedelta = REPLAY_WINDOW) -> datetime:
    """`timestamp` (Unix seconds, integer) of a signed body: refused when further than `window`
    from now, either way (an old one is a replay; one far ahead is not trusted either)."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 10**11:
        raise MalformedCallback("timestamp missing or not Unix seconds")
    sent = datetime.fromtimestamp(value, timezone.utc)
    if abs(now - sent) > window:
        raise ForgedCallback(f"stale timestamp ({int((now - sent).total_seconds())} s)")
    return sent


def parse_instant(value: object, default: datetime) -> datetime:
    """An ISO 8601 instant of a JSON body ('2024-01-15T13:10:09+01:00'), naive read as UTC."""
    if value is None:
        return default
    if not isinstance(value, str) or len(value) > 40:
        raise MalformedCallback("paidAt is not an ISO 8601 date-time")
    try:
        instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as error:
        raise MalformedCallback("paidAt is not an ISO 8601 date-time") from error
    return instant if instant.tzinfo else instant.replace(tzinfo=timezone.utc)


# --- QR codes ---------------------------------------------------------------------------


def qr_png(text: str, *, box_size: int = 8, border: int = 4) -> bytes:
    """A PNG QR code of `text` (medium error correction), for the chat to send as an image."""
    import qrcode
    from qrcode.constants import ERROR_CORRECT_M
    from qrcode.image.pil import PilImage

    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=box_size, border=border,
                         image_factory=PilImage)
    code.add_data(text)
    code.make(fit=True)
    buffer = io.BytesIO()
    code.make_image().save(buffer)
    return buffer.getvalue()
