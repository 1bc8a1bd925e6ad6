"""The WhatsApp channel (Cloud API, a thin httpx client): `receive` turns webhook envelopes into
Events and statuses, `send` renders Replies within `limits`, `client` talks to the Graph API,
`channel` wires them to the conversation (stale taps, typed numbers, opt-in), `templates` picks
the approved template of a notification and `outbox` is the worker's sender (24-hour window,
error codes). The webhook route itself is `webhooks/whatsapp.py`."""

CHANNEL = "whatsapp"
