"""A thin async client of the WhatsApp Cloud API (Graph API), over httpx.

`WHATSAPP_API_BASE` (default `https://graph.facebook.com/v21.0`) says where the calls go, so the
tests point it at a fake Graph API on loopback. Graph API errors come back as `GraphError` with
Meta's numeric code; the callers decide what a code means (see limits.py).
"""
from __future__ import annotations

import logging
from typing import Any

import httpx

from core.config import Settings

log = logging.getLogger("fatoura.whatsapp")

TIMEOUT = httpx.Timeout(20.0, connect=5.0)


class WhatsAppNotConfigured(RuntimeError):
    """WHATSAPP_TOKEN or WHATSAPP_PHONE_NUMBER_ID is missing; the message names it."""


class GraphError(Exception):
    def __init__(self, code: int, message: str, status: int, details: str | None = None) -> None:
        super().__init__(f"({code}) {message}" + (f": {details}" if details else ""))
        self.code, self.message, self.status, self.details = code, message, status, details


def _error(response: httpx.Response) -> GraphError:
    try:
        error = response.json().get("error") or {}
    except ValueError:
        error = {}
    details = (error.get("error_data") or {}).get("details") if isinstance(error.get("error_data"), dict) else None
    return GraphError(int(error.get("code") or 0), str(error.get("message") or response.reason_phrase),
                      response.status_code, details)


class GraphClient:
    def __init__(self, base_url: str, token: str, phone_number_id: str, *,
                 http: httpx.AsyncClient | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.phone_number_id = phone_number_id
        self._http = http or httpx.AsyncClient(timeout=TIMEOUT)
        self._headers = {"Authorization": f"Bearer {token}"}

    @classmethod
    def from_settings(cls, settings: Settings) -> GraphClient:
        token = settings.whatsapp_token.get_secret_value() if settings.whatsapp_token else ""
        if not token:
            raise WhatsAppNotConfigured("WHATSAPP_TOKEN is not set")
        if not settings.whatsapp_phone_number_id:
            raise WhatsAppNotConfigured("WHATSAPP_PHONE_NUMBER_ID is not set")
        return cls(settings.whatsapp_api_base, token, settings.whatsapp_phone_number_id)

    async def _post(self, path: str, **kwargs: Any) -> dict[str, Any]:
        response = await self._http.post(f"{self.base_url}/{path}", headers=self._headers, **kwargs)
        if response.status_code >= 400:
            raise _error(response)
        return response.json()

    async def send(self, to: str, message: dict[str, Any], *, bsuid: bool = False) -> str:
        """Send one message (`message` holds `type` and its object); returns its wamid. `to` is a
        phone number (wa_id), or a business-scoped user id sent as `recipient` when `bsuid`."""
        body = {"messaging_product": "whatsapp", "recipient_type": "individual",
                ("recipient" if bsuid else "to"): to, **message}
        answer = await self._post(f"{self.phone_number_id}/messages", json=body)
        return str(answer["messages"][0]["id"])

    async def upload(self, content: bytes, mime_type: str, filename: str) -> str:
        """Upload a document or an image; returns the media id to send it by."""
        answer = await self._post(f"{self.phone_number_id}/media",
                                  data={"messaging_product": "whatsapp", "type": mime_type},
                                  files={"file": (filename, content, mime_type)})
        return str(answer["id"])

    async def close(self) -> None:
        await self._http.aclose()
