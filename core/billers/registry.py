"""Which biller connectors this deployment talks to: the sandbox billers and the HTTP billers."""
from __future__ import annotations

from core.billers.base import BillerConnector, BillerInfo
from core.config import Settings
from core.db import Database
from core.errors import UnknownBiller


class BillerRegistry:
    def __init__(self, connectors: dict[str, BillerConnector] | None = None) -> None:
        self._connectors: dict[str, BillerConnector] = dict(connectors or {})

    def add(self, connector: BillerConnector) -> None:
        self._connectors[connector.info.code] = connector

    def get(self, code: str) -> BillerConnector:
        connector = self._connectors.get(code) if isinstance(code, str) else None
        if connector is None:
            raise UnknownBiller(f"unknown biller {code!r}")
        return connector

    async def load(self) -> None:
        """Fetch what HTTP billers say of themselves (/info); one that is down keeps its configured name."""
        for connector in self._connectors.values():
            load = getattr(connector, "load_info", None)
            if load is not None:
                try:
                    await load()
                except Exception as error:  # noqa: BLE001 - a biller down at start must not stop the app
                    import logging

                    logging.getLogger("fatoura.billers").warning("biller %s: %s", connector.info.code, type(error).__name__)

    async def close(self) -> None:
        for connector in self._connectors.values():
            close = getattr(connector, "aclose", None)
            if close is not None:
                await close()

    def infos(self) -> list[BillerInfo]:
        return [connector.info for connector in self._connectors.values()]

    def __contains__(self, code: object) -> bool:
        return code in self._connectors

    @classmethod
    def from_settings(cls, settings: Settings, db: Database) -> "BillerRegistry":
        registry = cls()
        if settings.sandbox:
            from core.billers.catalog import SANDBOX_BILLERS
            from core.billers.sandbox.connector import SandboxBiller

            for info in SANDBOX_BILLERS:
                registry.add(SandboxBiller(info, db))
        if settings.http_billers:
            from core.billers.http import HttpBiller

            for code, conf in settings.http_billers.items():
                registry.add(HttpBiller.from_config(code, conf, timeout=settings.http_biller_timeout))
        return registry
