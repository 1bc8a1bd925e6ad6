"""Notification preferences in the chat: new invoices and reminders, for the chat and per account."""
from __future__ import annotations

from typing import TYPE_CHECKING

from bot.conversation import callbacks as cb
from bot.conversation import views
from bot.conversation.replies import Button
from core.i18n import Translator
from core.models import ChatUser, LinkedAccount
from core.services import preferences
from core.services.linking import list_links

if TYPE_CHECKING:
    from bot.conversation.engine import Conversation, Turn


def _label(t: Translator, kind: str, on: bool) -> str:
    if kind == preferences.NEW_INVOICES:
        return t._("New invoices: on") if on else t._("New invoices: off")
    return t._("Reminders: on") if on else t._("Reminders: off")


def _both(t: Translator, target: ChatUser | LinkedAccount) -> str:
    return (f"{_label(t, preferences.NEW_INVOICES, target.notify_new_invoices)} · "
            f"{_label(t, preferences.REMINDERS, target.notify_reminders)}")


def settings_view(t: Translator, user: ChatUser, links: list[LinkedAccount], *, replace: bool = False):  # noqa: ANN201
    lines = [t._("Notifications"),
             t._("New invoices come here when the biller issues them; reminders come before the due date "
                 "(never at night)."), "",
             t._("This chat") + " — " + _both(t, user)]
    rows = [[Button(_label(t, preferences.NEW_INVOICES, user.notify_new_invoices), cb.pack(cb.NOTIFY, 0, "n")),
             Button(_label(t, preferences.REMINDERS, user.notify_reminders), cb.pack(cb.NOTIFY, 0, "r"))]]
    if user.notify_new_invoices or user.notify_reminders:
        for link in links:
            name = views.account_name(t, link)
            lines.append(f"{name} — {_both(t, link)}")
            rows.append([Button(f"{name[:24]} · {_label(t, preferences.NEW_INVOICES, link.notify_new_invoices)}",
                                cb.pack(cb.NOTIFY, link.id, "n")),
                         Button(f"{name[:24]} · {_label(t, preferences.REMINDERS, link.notify_reminders)}",
                                cb.pack(cb.NOTIFY, link.id, "r"))])
    rows.append([views.menu_button(t)])
    return views.text(t, "\n".join(lines), *rows, replace=replace)


async def menu(conv: "Conversation", turn: "Turn", args: list[str]) -> None:
    """N: show the preferences; N|<link_id or 0>|<n or r>: flip one, then show them again."""
    replace = False
    if len(args) >= 2:
        try:
            link_id = int(args[0])
        except ValueError:
            return await conv._stale(turn)
        if await preferences.toggle(conv.db, turn.user.id, link_id, args[1]) is None:
            return await conv._stale(turn)
        replace = True
    user = await preferences.chat_user(conv.db, turn.user.id)
    turn.say(settings_view(turn.t, user, await list_links(conv.db, turn.user.id), replace=replace))
