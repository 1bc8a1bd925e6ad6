"""The conversation and its chat channels (Telegram, WhatsApp, web chat)."""
