"""Receipt verification codes: the receipt number plus an HMAC of it under SECRET_KEY.

Printed on every receipt with the address of our `/receipts/{code}` page; a code cannot be made up
without the key, and the page answers the same "not found" to a forged code and an unknown one.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re

from core.config import Settings

_CODE = re.compile(r"^([A-Z0-9\-]{4,32})\.([A-Z2-7]{16})$")


def _mac(key: str, receipt: str) -> str:
    digest = hmac.new(key.encode(), f"receipt:{receipt}".encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode()[:16]


def verification_code(settings: Settings, receipt: str) -> str:
    return f"{receipt}.{_mac(settings.secret_key.get_secret_value(), receipt)}"


def verification_url(settings: Settings, receipt: str) -> str:
    return f"{settings.public_base_url.rstrip('/')}/receipts/{verification_code(settings, receipt)}"


def receipt_of(settings: Settings, code: str) -> str | None:
    """The receipt number a genuine code stands for; None for anything else."""
    match = _CODE.match(code.strip().upper()) if isinstance(code, str) and len(code) < 80 else None
    if not match:
        return None
    receipt, mac = match.groups()
    if not hmac.compare_digest(mac, _mac(settings.secret_key.get_secret_value(), receipt)):
        return None
    return receipt
