"""The Telegram channel (aiogram 3): `receive` turns updates into Events, `send` renders Replies,
`limits` says what Telegram accepts, `bot` wires them to the conversation, `runner` runs polling
or sets the webhook (the webhook route itself is `webhooks/telegram.py`)."""

CHANNEL = "telegram"
