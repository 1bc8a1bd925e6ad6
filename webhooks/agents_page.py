"""The agent console's HTML: the sign-in page, the console and its live panels (escaped, localized).

Pure functions of data and a Translator. Forms post to /agents/...; each carries the session's
CSRF token. The live panels (#queue, #ticket-live) are re-fetched by console.js on each change.
"""
from __future__ import annotations

import hashlib
from datetime import datetime
from functools import lru_cache
from html import escape
from pathlib import Path

from bot.conversation.views import service_label, shown_identifier
from core.billers.catalog import SANDBOX_BILLERS
from core.errors import N_
from core.i18n import LANGUAGE_NAMES, LANGUAGES, Translator
from core.models import Agent, utcnow
from core.services.handoff import OPEN, PENDING, Details, QueueItem
from core.services.invoices import ListPage

STATIC = Path(__file__).resolve().parent / "static" / "agents"
ASSETS = {"console.js": "text/javascript; charset=utf-8", "console.css": "text/css; charset=utf-8"}
CHANNELS = {"telegram": "Telegram", "whatsapp": "WhatsApp", "webchat": N_("Web chat")}
# The page's words (Babel does not read calls inside f-strings, so they are marked here).
WORDS = (
    N_("Fatoura agent console"),
    N_("Username"),
    N_("Password"),
    N_("Sign in"),
    N_("Back to the console"),
    N_("Customer"),
    N_("Claim"),
    N_("you"),
    N_("Nobody is waiting."),
    N_("Internal note"),
    N_("Agent"),
    N_("No message yet."),
    N_("No linked account."),
    N_("Send a payment link"),
    N_("Send the PDF"),
    N_("You have no unpaid invoice."),
    N_("Invoice"),
    N_("Due date"),
    N_("Amount"),
    N_("Unpaid invoices"),
    N_("Waiting in the queue"),
    N_("Closed"),
    N_("Hand over"),
    N_("Back to the queue"),
    N_("Reply to the customer"),
    N_("Send"),
    N_("Internal note (the customer never sees it)"),
    N_("Add the note"),
    N_("Close the conversation"),
    N_("Linked accounts"),
    N_("Language"),
    N_("Sign out"),
    N_("Reconnecting…"),
    N_("Your session has expired. Sign in again."),
    N_("Choose a conversation in the queue."),
)


def words(t: Translator) -> dict[str, str]:
    return {msgid: t._(msgid) for msgid in WORDS}


@lru_cache(maxsize=None)
def asset(name: str) -> tuple[bytes, str]:
    content = (STATIC / name).read_bytes()
    return content, hashlib.sha256(content).hexdigest()[:12]


def _page(t: Translator, title: str, body: str) -> str:
    css, js = asset("console.css")[1], asset("console.js")[1]
    return (f'<!doctype html><html lang="{t.language}" dir="{"rtl" if t.rtl else "ltr"}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,"><title>{escape(title)}</title>'
            f'<link rel="stylesheet" href="/agents/assets/console.css?v={css}">'
            f'<script src="/agents/assets/console.js?v={js}" defer></script></head><body>{body}</body></html>')


def _csrf(token: str) -> str:
    return f'<input type="hidden" name="csrf" value="{escape(token)}">'


def _button_form(action: str, label: str, csrf: str, css: str = "", fields: str = "") -> str:
    return (f'<form method="post" action="{escape(action)}" class="inline">{_csrf(csrf)}{fields}'
            f'<button type="submit" class="{css}">{escape(label)}</button></form>')


def login_page(t: Translator, *, error: str | None = None, username: str = "", token: str = "") -> str:
    w = words(t)
    notice = f'<p class="notice error" role="alert">{escape(error)}</p>' if error else ""
    languages = " · ".join(f'<a href="/agents?lang={code}">{escape(LANGUAGE_NAMES[code])}</a>' for code in LANGUAGES)
    body = (f'<main class="login"><h1>{escape(w["Fatoura agent console"])}</h1>{notice}'
            f'<form method="post" action="/agents/login" class="card">'
            f'<input type="hidden" name="lang" value="{t.language}">'
            f'<input type="hidden" name="login_token" value="{escape(token)}">'
            f'<label>{escape(w["Username"])}<input name="username" autocomplete="username" required '
            f'value="{escape(username)}"></label>'
            f'<label>{escape(w["Password"])}<input name="password" type="password" autocomplete="current-password" '
            f'required></label><button type="submit" class="primary">{escape(w["Sign in"])}</button></form>'
            f'<p class="languages">{languages}</p></main>')
    return _page(t, w["Fatoura agent console"], body)


def message_page(t: Translator, message: str) -> str:
    w = words(t)
    body = (f'<main class="login"><h1>{escape(w["Fatoura agent console"])}</h1>'
            f'<p class="notice error" role="alert">{escape(message)}</p>'
            f'<p><a href="/agents">{escape(w["Back to the console"])}</a></p></main>')
    return _page(t, w["Fatoura agent console"], body)


def _customer(t: Translator, user) -> str:  # noqa: ANN001 - a ChatUser
    # Never the chat id: a web chat's id is the key to that chat.
    return (user.display_name or t._("Customer")) + " · " + t._(CHANNELS.get(user.channel, user.channel))


def _waited(t: Translator, since: datetime, now: datetime) -> str:
    minutes = max(0, int((now - since).total_seconds() // 60))
    return t.ngettext("waiting {n} min", "waiting {n} min", minutes)


def queue_panel(t: Translator, items: list[QueueItem], agent: Agent, csrf: str, selected: int | None) -> str:
    w = words(t)
    now = utcnow()
    rows = []
    for item in items:
        ticket = item.ticket
        current = ' aria-current="true"' if ticket.id == selected else ""
        if ticket.status == PENDING:
            state = f'<span class="badge waiting">{escape(_waited(t, ticket.created_at, now))}</span>'
            action = _button_form(f"/agents/tickets/{ticket.id}/claim", w["Claim"], csrf, "primary small")
        else:
            holder = w["you"] if ticket.agent_id == agent.id else (item.agent.name if item.agent else "—")
            with_agent = t._("with {agent}", agent=holder)
            state = f'<span class="badge open">{escape(with_agent)}</span>'
            action = ""
        reason = f'<span class="reason" dir="auto">{escape(ticket.reason)}</span>' if ticket.reason else ""
        rows.append(f'<li class="ticket {ticket.status}" data-ticket="{ticket.id}"{current}>'
                    f'<a href="/agents?ticket={ticket.id}"><strong>#{ticket.id}</strong> '
                    f'{escape(_customer(t, item.user))}</a>{state}{reason}{action}</li>')
    waiting = sum(1 for item in items if item.ticket.status == PENDING)
    head = t.ngettext("{n} customer waiting", "{n} customers waiting", waiting)
    empty = f'<p class="muted">{escape(w["Nobody is waiting."])}</p>' if not items else ""
    return f'<h2>{escape(head)}</h2>{empty}<ol class="queue">{"".join(rows)}</ol>'




def transcript(t: Translator, details: Details, agents: dict[int, Agent]) -> str:
    w = words(t)
    lines = []
    for entry in details.entries:
        who = w["Customer"] if entry.author == "customer" else (
            w["Internal note"] if entry.internal else ("Fatoura" if entry.author == "bot" else w["Agent"]))
        if entry.agent_id and entry.agent_id in agents:
            who += f" · {agents[entry.agent_id].name}"
        text = t._(entry.text) if entry.author == "bot" else entry.text  # stored msgids read in the agent's language
        lines.append(f'<li class="entry {escape(entry.author)}{" internal" if entry.internal else ""}">'
                     f'<span class="who">{escape(who)}</span> <time>{escape(t.time(entry.created_at))}</time>'
                     f'<p dir="auto">{escape(text)}</p></li>')
    if not lines:
        lines.append(f'<li class="muted">{escape(w["No message yet."])}</li>')
    return f'<ol class="transcript" id="transcript">{"".join(lines)}</ol>'


def _service(t: Translator, link) -> str:  # noqa: ANN001 - a LinkedAccount
    """'Maroc Telecom · Mobile' rather than the codes 'iam / mobile'."""
    biller = next((info.name for info in SANDBOX_BILLERS if info.code == link.biller), link.biller)
    return f"{biller} · {service_label(t, link.service)}"


def _accounts(t: Translator, details: Details, invoices: ListPage | None, csrf: str, mine: bool) -> str:
    w = words(t)
    ticket_id = details.ticket.id
    if not details.links:
        return f'<p class="muted">{escape(w["No linked account."])}</p>'
    parts = []
    for link in details.links:
        name = link.nickname or shown_identifier(link.identifier, t.rtl)
        pay = _button_form(f"/agents/tickets/{ticket_id}/payment-link", w["Send a payment link"], csrf, "small",
                           f'<input type="hidden" name="link_id" value="{link.id}">') if mine else ""
        parts.append(f'<li><strong>{escape(name)}</strong> · {escape(_service(t, link))}'
                     f'{" · " + escape(link.holder_name) if link.holder_name else ""} {pay}</li>')
    html = f'<ul class="accounts">{"".join(parts)}</ul>'
    if invoices is None:
        return html
    rows = []
    for listed in invoices.items:
        invoice = listed.invoice
        send = _button_form(f"/agents/tickets/{ticket_id}/invoice", w["Send the PDF"], csrf, "small",
                            f'<input type="hidden" name="link_id" value="{listed.link.id}">'
                            f'<input type="hidden" name="number" value="{escape(invoice.number)}">') if mine else ""
        rows.append(f'<tr><td>{escape(invoice.number)}<br><small class="muted">{escape(invoice.issuer)}</small></td>'
                    f'<td>{escape(t.date(invoice.due_date))}</td><td class="num">{escape(t.amount(invoice.amount_ttc))}</td>'
                    f'<td>{send}</td></tr>')
    if not rows:
        return html + f'<p class="muted">{escape(w["You have no unpaid invoice."])}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in (w["Invoice"], w["Due date"], w["Amount"], ""))
    return html + (f'<h3>{escape(w["Unpaid invoices"])}</h3><table class="invoices"><thead><tr>{head}</tr></thead>'
                   f'<tbody>{"".join(rows)}</tbody></table>')


def ticket_live(t: Translator, details: Details, agent: Agent, agents: dict[int, Agent]) -> str:
    """The part of the open ticket that changes by itself: status line and transcript."""
    w = words(t)
    ticket = details.ticket
    if ticket.status == PENDING:
        status = w["Waiting in the queue"]
    elif ticket.status == OPEN:
        status = t._("Held by {agent}", agent=w["you"] if ticket.agent_id == agent.id
                     else (details.agent.name if details.agent else "—"))
    else:
        status = w["Closed"]
    rating = (" · " + t._("Rated {n}/5", n=ticket.rating)) if ticket.rating else ""
    holder = f"{ticket.status}:{ticket.agent_id or ''}"
    return (f'<p class="status" data-holder="{escape(holder)}">{escape(status)}{escape(rating)}</p>'
            + transcript(t, details, agents))


def ticket_panel(t: Translator, details: Details, agent: Agent, agents: dict[int, Agent], invoices: ListPage | None,
                 csrf: str) -> str:
    w = words(t)
    ticket = details.ticket
    mine = ticket.status == OPEN and ticket.agent_id == agent.id
    head = (f'<h2>#{ticket.id} · {escape(_customer(t, details.user))} '
            f'<span class="muted">({escape(LANGUAGE_NAMES.get(details.user.locale, details.user.locale))})</span></h2>')
    reason = t._("Reason: {reason}", reason=ticket.reason) if ticket.reason else ""
    reason = f'<p class="reason" dir="auto">{escape(reason)}</p>' if reason else ""
    actions = ""
    if ticket.status == PENDING:
        actions = _button_form(f"/agents/tickets/{ticket.id}/claim", w["Claim"], csrf, "primary")
    elif mine:
        others = [a for a in agents.values() if a.id != agent.id and a.active]
        options = "".join(f'<option value="{a.id}">{escape(a.name)}</option>' for a in others)
        options += f'<option value="0">{escape(w["Back to the queue"])}</option>'
        handover = _button_form(f"/agents/tickets/{ticket.id}/hand-over", w["Hand over"], csrf, "",
                                f'<select name="agent_id" aria-label="{escape(w["Agent"])}">{options}</select>')
        actions = (
            f'<form method="post" action="/agents/tickets/{ticket.id}/reply" class="reply">{_csrf(csrf)}'
            f'<textarea name="text" rows="3" required placeholder="{escape(w["Reply to the customer"])}"></textarea>'
            f'<button type="submit" class="primary">{escape(w["Send"])}</button></form>'
            f'<form method="post" action="/agents/tickets/{ticket.id}/note" class="reply note">{_csrf(csrf)}'
            f'<textarea name="text" rows="2" required placeholder="{escape(w["Internal note (the customer never sees it)"])}">'
            f'</textarea><button type="submit">{escape(w["Add the note"])}</button></form>'
            f'<div class="row">{handover}'
            f'{_button_form(f"/agents/tickets/{ticket.id}/close", w["Close the conversation"], csrf, "danger")}</div>')
    return (f'<section class="ticket-head">{head}{reason}</section>'
            f'<div class="columns"><section class="conversation"><div id="ticket-live" data-ticket="{ticket.id}">'
            f'{ticket_live(t, details, agent, agents)}</div>{actions}</section>'
            f'<aside class="context"><h3>{escape(w["Linked accounts"])}</h3>'
            f'{_accounts(t, details, invoices, csrf, mine)}</aside></div>')


def console_page(t: Translator, agent: Agent, csrf: str, queue_html: str, ticket_html: str,
                 notice: str | None = None, error: str | None = None) -> str:
    w = words(t)
    languages = "".join(f'<option value="{code}"{" selected" if code == t.language else ""}>'
                        f'{escape(LANGUAGE_NAMES[code])}</option>' for code in LANGUAGES)
    flash = ""
    if error:
        flash = f'<p class="notice error" role="alert">{escape(error)}</p>'
    elif notice:
        flash = f'<p class="notice ok" role="status">{escape(notice)}</p>'
    body = (f'<header class="bar"><strong>{escape(w["Fatoura agent console"])}</strong>'
            f'<span class="me">{escape(agent.name)}</span>'
            f'<form method="post" action="/agents/language" class="inline">{_csrf(csrf)}'
            f'<select name="lang" aria-label="{escape(w["Language"])}" data-autosubmit>{languages}</select>'
            f'<noscript><button type="submit">OK</button></noscript></form>'
            f'{_button_form("/agents/logout", w["Sign out"], csrf)}'
            f'<span id="live" class="live" data-offline="{escape(w["Reconnecting…"])}" '
            f'data-expired="{escape(w["Your session has expired. Sign in again."])}"></span></header>'
            f'{flash}<main class="console"><nav id="queue" class="panel">{queue_html}</nav>'
            f'<section id="ticket" class="panel">{ticket_html or _hint(t)}</section></main>')
    return _page(t, w["Fatoura agent console"], body)


def _hint(t: Translator) -> str:
    w = words(t)
    return f'<p class="muted">{escape(w["Choose a conversation in the queue."])}</p>'
