"""The configured payment gateways, by code and by chat channel.

Each gateway is the real one when its credentials are all set, else -- only when
`settings.sandbox` is on -- its sandbox variant: the same class, `sandbox=True`, keys from the
settings or derived from SECRET_KEY, and for CMI our own hosted page
`{public_base_url}/sandbox/cmi/est3Dgate` (webhooks/sandbox_gateways.py). With sandbox off and no
credentials, the gateway is simply absent, so its channel is not offered: a production deployment
never takes a test payment.

    real CMI        cmi_client_id + cmi_store_key (+ cmi_gateway_url)
    real Fatourati  fatourati_api_url + fatourati_merchant_code + fatourati_api_key
                    (+ fatourati_store_code, fatourati_client_id / fatourati_client_secret)
    real Amanpay    amanpay_api_url + amanpay_merchant_id + amanpay_secret
"""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Iterator

from core.config import Settings
from core.errors import UnknownGateway
from core.payments.amanpay import AmanpayGateway
from core.payments.base import Gateway
from core.payments.cmi import CmiGateway
from core.payments.fatourati import FatouratiGateway

SANDBOX_CMI_CLIENT_ID = "600000000"
SANDBOX_CMI_PATH = "/sandbox/cmi/est3Dgate"


def _secret(value) -> str | None:  # noqa: ANN001 - SecretStr | str | None
    if value is None:
        return None
    text = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
    return text or None


def sandbox_key(settings: Settings, gateway: str) -> str:
    """The sandbox key of `gateway` ("cmi", "fatourati", "amanpay"): the setting when given, else
    an HMAC of SECRET_KEY, so the simulators and our verifiers agree without a key in the code."""
    explicit = {
        "cmi": settings.cmi_sandbox_store_key,
        "fatourati": settings.fatourati_sandbox_key,
        "amanpay": settings.amanpay_sandbox_secret,
    }[gateway]
    if _secret(explicit):
        return _secret(explicit)
    key = settings.secret_key.get_secret_value().encode("utf-8")
    return hmac.new(key, f"fatoura sandbox gateway {gateway} v1".encode(), hashlib.sha256).hexdigest()[:32]


def sandbox_cmi(settings: Settings) -> CmiGateway:
    base = settings.public_base_url.rstrip("/")
    return CmiGateway(SANDBOX_CMI_CLIENT_ID, sandbox_key(settings, "cmi"), f"{base}{SANDBOX_CMI_PATH}", base,
                      sandbox=True)


def sandbox_fatourati(settings: Settings) -> FatouratiGateway:
    return FatouratiGateway(sandbox_key(settings, "fatourati"), settings.public_base_url,
                            expiry_hours=settings.fatourati_expiry_hours, sandbox=True)


def sandbox_amanpay(settings: Settings) -> AmanpayGateway:
    return AmanpayGateway(sandbox_key(settings, "amanpay"), settings.public_base_url, merchant_id="SANDBOX",
                          expiry_hours=settings.amanpay_expiry_hours, sandbox=True)


def _cmi(settings: Settings) -> CmiGateway | None:
    if settings.cmi_client_id and _secret(settings.cmi_store_key):
        return CmiGateway(settings.cmi_client_id, _secret(settings.cmi_store_key), settings.cmi_gateway_url,
                          settings.public_base_url)
    return sandbox_cmi(settings) if settings.sandbox else None


def _fatourati(settings: Settings) -> FatouratiGateway | None:
    if settings.fatourati_api_url and settings.fatourati_merchant_code and _secret(settings.fatourati_api_key):
        return FatouratiGateway(
            _secret(settings.fatourati_api_key), settings.public_base_url,
            expiry_hours=settings.fatourati_expiry_hours, api_url=settings.fatourati_api_url,
            merchant_code=settings.fatourati_merchant_code, store_code=settings.fatourati_store_code,
            client_id=settings.fatourati_client_id, client_secret=_secret(settings.fatourati_client_secret))
    return sandbox_fatourati(settings) if settings.sandbox else None


def _amanpay(settings: Settings) -> AmanpayGateway | None:
    if settings.amanpay_api_url and settings.amanpay_merchant_id and _secret(settings.amanpay_secret):
        return AmanpayGateway(_secret(settings.amanpay_secret), settings.public_base_url,
                              merchant_id=settings.amanpay_merchant_id, expiry_hours=settings.amanpay_expiry_hours,
                              api_url=settings.amanpay_api_url)
    return sandbox_amanpay(settings) if settings.sandbox else None


class GatewayRegistry:
    """Gateways by code ("cmi", "fatourati", "amanpay") and by channel (card, fatourati, tashilat)."""

    def __init__(self, gateways: Iterable[Gateway]) -> None:
        self._by_code: dict[str, Gateway] = {}
        self._by_channel: dict[str, Gateway] = {}
        for gateway in gateways:
            if gateway.code in self._by_code:
                raise ValueError(f"two gateways with code {gateway.code!r}")
            self._by_code[gateway.code] = gateway
            for channel in gateway.channels:
                self._by_channel.setdefault(channel, gateway)

    @classmethod
    def from_settings(cls, settings: Settings) -> "GatewayRegistry":
        return cls(g for g in (_cmi(settings), _fatourati(settings), _amanpay(settings)) if g is not None)

    def get(self, code: str) -> Gateway:
        """The gateway of /webhooks/payments/{code}; UnknownGateway when none is configured."""
        try:
            return self._by_code[code]
        except (KeyError, TypeError):
            raise UnknownGateway(f"no gateway {str(code)[:40]!r}") from None

    def for_channel(self, channel: str) -> Gateway:
        """The gateway that serves a chat payment channel; UnknownGateway when none does."""
        try:
            return self._by_channel[channel]
        except (KeyError, TypeError):
            raise UnknownGateway(f"no gateway for channel {str(channel)[:40]!r}") from None

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(self._by_code)

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(self._by_channel)

    def is_sandbox(self, code: str) -> bool:
        gateway = self._by_code.get(code)
        return bool(gateway is not None and gateway.sandbox)

    def __iter__(self) -> Iterator[Gateway]:
        return iter(self._by_code.values())

    def __contains__(self, code: object) -> bool:
        return code in self._by_code

    def __len__(self) -> int:
        return len(self._by_code)
