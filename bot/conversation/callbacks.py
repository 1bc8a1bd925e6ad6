"""Button payloads: 'action|arg|arg', short enough for Telegram's 64 bytes.

Actions that change something (unlink, forget) carry a one-time nonce kept in the chat's state,
so a press on an old message can't act twice.
"""
from __future__ import annotations

from bot.conversation.replies import MAX_CALLBACK_BYTES

SEP = "|"

MENU = "m"
CANCEL = "c"
LINK = "L"  # L | L|biller | L|biller|service
TERMINAL = "Lt"  # Lt|index
UNPAID = "U"  # U|page
SCOPE = "Ua"  # Ua|link_id  (0 = all accounts)
FILTERS = "F"  # F | F|kind | F|kind|value
INVOICE = "I"  # I|link_id|number
PDF = "P"  # P|link_id|number
HISTORY = "H"
ACCOUNTS = "A"  # A | A|link_id
RENAME = "Ar"  # Ar|link_id
UNLINK = "Au"  # Au|link_id
UNLINK_CONFIRM = "Ac"  # Ac|link_id|nonce
LANGUAGE = "G"  # G | G|lang
HELP = "?"
FORGET = "X"
FORGET_CONFIRM = "Xc"  # Xc|nonce
PAY = "$"  # $|link_id[|issuer index or #invoice number]: open the selection of an account's unpaid invoices
PAY_TOGGLE = "$t"  # $t|invoice_id
PAY_ALL = "$a"  # select every payable invoice of the issuer again
PAY_NEXT = "$k"  # selection done: show totals and the channels
PAY_CHANNEL = "$c"  # $c|channel: create the checkout
PAYMENTS = "Y"  # Y | Y|checkout_id
PAYMENT_CANCEL = "Yx"  # Yx|checkout_id
RECEIPT = "R"  # R|checkout_id
REPORTS = "Rp"  # Rp|link_id (0 = every account)
CHART = "Rc"  # Rc|link_id|months
EXPORT = "Rx"  # Rx|link_id|xlsx or pdf|period ("12m" or a year)
ARCHIVE = "Ra"  # Ra|link_id|year
RETRY_SAME = "Pc"  # Pc|checkout_id (sent by the confirmation messages)
RETRY_OTHER = "Pn"  # Pn|checkout_id
HANDOFF = "T"  # talk to an agent: asks the reason
HANDOFF_SKIP = "Ts"  # queue without a reason
HANDOFF_CANCEL = "Tx"  # withdraw the request / leave the agent
RATE = "Tr"  # Tr|ticket_id|1-5 (sent by the closing message)
NOTIFY = "N"  # N | N|link_id (0 = the whole chat)|n or r: notification preferences


def pack(action: str, *args: object) -> str:
    data = SEP.join([action, *(str(a) for a in args)])
    if len(data.encode()) > MAX_CALLBACK_BYTES:
        raise ValueError(f"callback data over {MAX_CALLBACK_BYTES} bytes: {data!r}")
    return data


def unpack(data: str | None) -> tuple[str, list[str]]:
    if not data:
        return "", []
    action, *args = data.split(SEP)
    return action, args
