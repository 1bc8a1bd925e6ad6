"""Settings read from the environment (and an optional .env file), one class for the whole app."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SQLITE_URL = "sqlite+aiosqlite:///./fatoura.db"


class Settings(BaseSettings):
    """Every setting the product reads. Secrets are SecretStr so they never show in logs or reprs."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str = DEFAULT_SQLITE_URL
    redis_url: str | None = None
    public_base_url: str = "http://127.0.0.1:8000"
    secret_key: SecretStr = SecretStr("dev-only-change-me")
    log_level: str = "INFO"

    # Sandbox billers and gateways are on unless a deployment turns them off.
    sandbox: bool = True
    sandbox_seed: int = 2017

    # Generic HTTP billers: JSON object {"code": {"name": "...", "base_url": "...", "token": "..."}}
    http_billers: dict[str, dict[str, str]] = Field(default_factory=dict)
    http_biller_timeout: float = 10.0

    telegram_bot_token: SecretStr | None = None
    telegram_webhook_secret: SecretStr | None = None
    telegram_api_base: str = "https://api.telegram.org"

    whatsapp_token: SecretStr | None = None
    whatsapp_phone_number_id: str | None = None
    whatsapp_app_secret: SecretStr | None = None
    whatsapp_verify_token: SecretStr | None = None
    whatsapp_api_base: str = "https://graph.facebook.com/v21.0"
    # Approved templates per outbox kind, over the defaults of bot/channels/whatsapp/templates.py:
    # {"invoice_new": {"name": "...", "params": ["issuer", ...]}, "*": {...generic...}}
    whatsapp_templates: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # Our language -> the template language code it was approved in.
    whatsapp_template_languages: dict[str, str] = Field(default_factory=dict)

    cmi_client_id: str | None = None
    cmi_store_key: SecretStr | None = None
    cmi_gateway_url: str = "https://testpayment.cmi.co.ma/fim/est3Dgate"
    fatourati_expiry_hours: int = 3
    amanpay_merchant_id: str | None = None
    amanpay_secret: SecretStr | None = None
    # CMI Fatourati aggregator API (shape unconfirmed, see core/payments/fatourati.py); the real
    # gateway is used when api url, merchant code and api key are all set, else the sandbox one.
    fatourati_api_url: str | None = None  # base URL of CMI's Fatourati aggregator API
    fatourati_merchant_code: str | None = None  # {merchantCode} in the API paths
    fatourati_store_code: str | None = None  # {store} in the API paths (defaults to the merchant code)
    fatourati_client_id: str | None = None  # OAuth2 client-credentials id
    fatourati_client_secret: SecretStr | None = None  # OAuth2 client-credentials secret
    fatourati_api_key: SecretStr | None = None  # store API key: HMAC key of requests and callbacks
    # Amanpay/M2T: our own contract (core/payments/amanpay.py); real when merchant id, secret and url are set.
    amanpay_api_url: str | None = None  # base URL of the Amanpay API
    amanpay_expiry_hours: int = 48  # how long a Tashilat cash code stays payable
    # Sandbox gateways: keys derived from SECRET_KEY unless set here (never a key fixed in the code).
    cmi_sandbox_store_key: SecretStr | None = None  # store key of the sandbox CMI page
    fatourati_sandbox_key: SecretStr | None = None  # HMAC key of the sandbox Fatourati callbacks
    amanpay_sandbox_secret: SecretStr | None = None  # HMAC key of the sandbox Amanpay callbacks
    sandbox_cmi_late_seconds: float = 15.0  # delay of the sandbox CMI "late callback" test card

    # Linking brute-force guard: failures before a slowdown, before a lockout, and its length.
    link_failures_before_delay: int = 3
    link_failures_before_lock: int = 5
    link_lock_minutes: int = 30

    # Support agents: console sign-in length; the Telegram supergroup (with topics) of agents.
    agent_session_minutes: int = 480
    support_chat_id: int | None = None
    support_minutes_per_customer: int = 4  # a first guess of the wait until claims give real figures
    # Delivery engine (`fatoura worker`): how many sends one worker keeps in flight, when a claim of
    # a dead worker is taken back, how often a message is tried before it is dead.
    worker_concurrency: int = 32
    outbox_claim_timeout: float = 300.0  # seconds
    outbox_max_attempts: int = 8
    outbox_poll_seconds: float = 0.5  # idle wait between two looks at the outbox
    # Telegram's limits, shared by every worker (Redis when REDIS_URL is set).
    telegram_rate_per_second: float = 30.0  # per bot
    telegram_chat_rate_per_second: float = 1.0  # per private chat
    telegram_group_per_minute: float = 20.0  # per group chat
    # Push: reminder days before the due date, quiet hours (Africa/Casablanca), sync of linked accounts.
    reminder_days: str = "3,1"
    quiet_hours: str = "21:00-08:00"
    push_sync_minutes: float = 60.0  # 0 turns the periodic sync off
    # Biller events (POST /webhooks/billers/{biller}): {"code": "secret"}; sandbox billers derive theirs.
    biller_event_secrets: dict[str, SecretStr] = Field(default_factory=dict)
    biller_event_tolerance_seconds: int = 300  # replay window of the signed timestamp

    @property
    def reminder_offsets(self) -> tuple[int, ...]:
        """REMINDER_DAYS as distinct positive days, largest first ("3,1" -> (3, 1))."""
        days = {int(part) for part in self.reminder_days.replace(";", ",").split(",") if part.strip()}
        return tuple(sorted((d for d in days if d >= 0), reverse=True))

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def sqlite_path(self) -> Path | None:
        if not self.is_sqlite:
            return None
        return Path(self.database_url.split("///", 1)[1])


@lru_cache
def get_settings() -> Settings:
    return Settings()
