"""The product with WhatsApp on, against the fake Graph API: the web app under uvicorn on
loopback, its webhook fed by the fake's customers, its outbox delivered by the real sender."""
from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from core.config import Settings
from fatoura.worker import build_senders, deliver_due
from tests.browser import serve
from tests.fakes.graph_api import FakeGraphAPI
from webhooks.app import create_app

APP_SECRET = "fatoura-test-app-secret"
VERIFY_TOKEN = "verify-me-please"
# The templates of docs/whatsapp-templates.md as approved in the WhatsApp Manager: name -> body parameters.
APPROVED = {"fatoura_invoice_new": 4, "fatoura_invoice_reminder": 4, "fatoura_payment_paid": 2,
            "fatoura_agent_reply": 2, "fatoura_notice": 1}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class WhatsAppShop:
    graph: FakeGraphAPI
    app: Any
    settings: Settings
    base: str
    db: Any

    async def deliver(self) -> None:
        """Worker rounds until the outbox has nothing due: with the in-process sender (it shares
        the conversation's menus) over the worker's own ones."""
        senders = {**build_senders(self.settings, self.db, self.app.state.fatoura.billers), **self.app.state.senders}
        while await deliver_due(self.db, senders, "test-worker"):
            pass

    async def idle(self) -> None:
        await self.app.state.whatsapp.channel.wait_idle()


@contextlib.asynccontextmanager
async def whatsapp_shop(db, **overrides: Any) -> AsyncIterator[WhatsAppShop]:  # noqa: ANN001
    port = free_port()
    async with FakeGraphAPI(app_secret=APP_SECRET, templates=APPROVED) as graph:
        settings = Settings(_env_file=None, sandbox=True, whatsapp_token=SecretStr(graph.token),
                            whatsapp_phone_number_id=graph.phone_number_id, whatsapp_app_secret=SecretStr(APP_SECRET),
                            whatsapp_verify_token=SecretStr(VERIFY_TOKEN), whatsapp_api_base=graph.base_url,
                            public_base_url=f"http://127.0.0.1:{port}", **overrides)
        app = create_app(settings, db=db)
        async with serve(app, port=port) as base:
            graph.webhook_url = base + "/webhooks/whatsapp"
            yield WhatsAppShop(graph, app, settings, base, db)
