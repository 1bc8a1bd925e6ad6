"""What Telegram accepts, and how a Reply's text and buttons are cut to fit it."""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TypeVar

from bot.conversation.replies import MAX_CALLBACK_BYTES, TELEGRAM_LIMITS, split_text

TEXT_LIMIT = TELEGRAM_LIMITS.max_text  # characters of a message text
CAPTION_LIMIT = 1024  # characters of a document or photo caption
CALLBACK_DATA_LIMIT = MAX_CALLBACK_BYTES  # bytes; the conversation's Button refuses more
MAX_BUTTONS_PER_ROW = TELEGRAM_LIMITS.max_buttons_per_row
MAX_BUTTONS = TELEGRAM_LIMITS.max_buttons  # inline buttons on one message
MAX_BUTTON_LABEL = TELEGRAM_LIMITS.max_button_label

# The update types the bot handles; polling asks for these and setWebhook subscribes to these.
ALLOWED_UPDATES = ["message", "callback_query"]
# Telegram's rule for setWebhook's secret_token (sent back in X-Telegram-Bot-Api-Secret-Token).
SECRET_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")

# One Bot API call is tried at most this often (429 flood waits, 5xx answers) ...
SEND_ATTEMPTS = 4
# ... and a flood wait longer than this is not waited out inside a conversation turn.
MAX_RETRY_AFTER = 60.0

T = TypeVar("T")


def text_parts(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """The text cut into messages of at most `limit` characters; blank parts dropped (Telegram
    refuses an empty message)."""
    return [part for part in split_text(text, limit) if part.strip()]


def fit_label(label: str) -> str:
    label = " ".join(label.split()) or "·"
    return label if len(label) <= MAX_BUTTON_LABEL else label[:MAX_BUTTON_LABEL - 1] + "…"


def fit_rows(rows: Iterable[Sequence[T]]) -> list[list[T]]:
    """Rows of at most MAX_BUTTONS_PER_ROW buttons (long rows wrap), MAX_BUTTONS in all."""
    fitted: list[list[T]] = []
    left = MAX_BUTTONS
    for row in rows:
        for start in range(0, len(row), MAX_BUTTONS_PER_ROW):
            chunk = list(row[start:start + MAX_BUTTONS_PER_ROW])[:left]
            if chunk:
                fitted.append(chunk)
                left -= len(chunk)
    return fitted
