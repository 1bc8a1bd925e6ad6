"""What the WhatsApp Cloud API accepts, and how labels are cut to fit it."""
from __future__ import annotations

from bot.conversation.replies import WHATSAPP_LIMITS

TEXT_LIMIT = 4096  # a text message body
BODY_LIMIT = WHATSAPP_LIMITS.max_text  # the body of an interactive message (buttons, list, cta_url)
CAPTION_LIMIT = 1024  # a document or image caption
MAX_REPLY_BUTTONS = 3
BUTTON_TITLE = 20  # reply button title; also the list's button and a cta_url's display text
MAX_LIST_ROWS = WHATSAPP_LIMITS.max_buttons  # rows of one list message, all sections together
ROW_TITLE = WHATSAPP_LIMITS.max_button_label  # 24
ROW_DESCRIPTION = 72
ID_LIMIT = 200  # a list row id (a reply button id may hold 256: the smaller one for both)
TEMPLATE_PARAM_LIMIT = 1024  # our cap; Meta refuses newlines, tabs and runs of 5 spaces in a parameter

# Graph API error codes and what they mean for a send.
RE_ENGAGEMENT = 131047  # more than 24 hours since the customer wrote: only a template goes
UNDELIVERABLE = (131026, 131049)  # not a WhatsApp user / blocked / per-user marketing limit
THROUGHPUT = (130429, 131056, 80007)  # rate limit, pair rate limit, WABA rate limit
MEDIA_FAILED = 131053  # media upload or download error: upload again once


def fit(label: str, limit: int) -> str:
    """One line of at most `limit` characters; cut at a word where that keeps most of it."""
    label = " ".join(label.split()) or "·"
    if len(label) <= limit:
        return label
    cut = label.rfind(" ", 0, limit - 1)
    cut = cut if cut >= limit // 2 else limit - 1
    return label[:cut].rstrip(" ·.,:-") + "…"
