"""The agent console: `GET /agents` (sign-in or the console), its POST actions, the live stream.

Every action needs a valid session cookie (signed, HttpOnly, SameSite=Strict, expiring after
AGENT_SESSION_MINUTES) and the session's CSRF token in the form; the desk then checks that the
agent may do it (holds the conversation). A refused request changes nothing: 401 without a
session, 403 without the right token, 409 when the conversation is someone else's or closed.

Live updates: `GET /agents/stream` is a Server-Sent Events stream that polls the database
(core.services.handoff.Desk.version) every second, so a page held by any web process learns of
changes made by any other; console.js then re-fetches `GET /agents/panels`.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse

from core.errors import N_, FatouraError
from core.i18n import DEFAULT_LANGUAGE, LANGUAGES, Translator, translator
from core.models import Agent
from core.services import agents as agent_service
from core.services import invoices as invoice_service
from core.services import linking
from core.services.agents import Sessions
from core.services.handoff import Desk, NotTheirs, UnknownAgent
from webhooks import agents_page as page
from webhooks.webchat import accepted_language

log = logging.getLogger("fatoura.agents")

COOKIE = "fatoura_agent"
LOGIN_COOKIE = "fatoura_login"  # the sign-in form's token: a page of another site can't sign an agent in
POLL_SECONDS = 1.0
HEARTBEAT_SECONDS = 15.0
LOGIN_FAILURES = 5  # per username within LOGIN_WINDOW, then a pause
LOGIN_WINDOW = 15 * 60
HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                                "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
WRONG_LOGIN = N_("Wrong username or password.")
TOO_MANY_LOGINS = N_("Too many failed attempts. Wait a few minutes and try again.")
EXPIRED = N_("Your session has expired. Sign in again.")
FORGED = N_("This request was refused: it did not come from your console page. Reload the page and try again.")
FORGED_LOGIN = N_("This sign-in did not come from the console's page. Sign in here again.")
NOTICES = {
    "claimed": N_("You hold this conversation now."),
    "sent": N_("Sent to the customer."),
    "noted": N_("Note added (agents only)."),
    "handed": N_("Handed over."),
    "closed": N_("Conversation closed; the customer is asked to rate the help."),
}

router = APIRouter(prefix="/agents", include_in_schema=False)


class Console:
    """What the routes need, kept on `app.state.agents`."""

    def __init__(self, desk: Desk, sessions: Sessions, billers: Any, store: Any, secure: bool) -> None:
        self.desk, self.sessions, self.billers, self.store, self.secure = desk, sessions, billers, store, secure


def _console(request: Request) -> Console:
    return request.app.state.agents


def _login_page(request: Request, t: Translator, status: int = 200, *, error: str | None = None,
                username: str = "") -> HTMLResponse:
    """The sign-in page with a fresh form token, also set in a SameSite=Strict cookie: a sign-in
    posted from another site carries no cookie, so it can't sign the browser into someone's account."""
    token = secrets.token_urlsafe(16)
    response = _html(page.login_page(t, error=error, username=username, token=token), status)
    response.set_cookie(LOGIN_COOKIE, token, max_age=3600, path="/agents", httponly=True, samesite="strict",
                        secure=_console(request).secure)
    return response


def _html(content: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(content, status_code=status, headers=HEADERS)


def _guest_language(request: Request) -> str:
    lang = (request.query_params.get("lang") or "").lower()
    return lang if lang in LANGUAGES else accepted_language(request.headers.get("accept-language")) or DEFAULT_LANGUAGE


async def _agent(request: Request) -> Agent | None:
    return await _console(request).sessions.agent(request.cookies.get(COOKIE))


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}


async def _acting_agent(request: Request) -> tuple[Agent | None, dict[str, str], Response | None]:
    """The agent a state-changing request acts for and its form, or the refusal to answer."""
    form = await _form(request)
    agent = await _agent(request)
    if agent is None:
        t = translator(_guest_language(request))
        return None, form, _login_page(request, t, 401, error=t._(EXPIRED))
    if not _console(request).sessions.check_csrf(request.cookies.get(COOKIE), form.get("csrf")):
        log.warning("agent console: refused a request without its CSRF token (agent %s)", agent.id)
        return None, form, _html(page.message_page(translator(agent.language), translator(agent.language)._(FORGED)), 403)
    return agent, form, None


def _back(ticket_id: int | None = None, notice: str | None = None) -> RedirectResponse:
    query = "&".join(part for part in (f"ticket={ticket_id}" if ticket_id else "",
                                       f"notice={notice}" if notice else "") if part)
    return RedirectResponse("/agents" + ("?" + query if query else ""), status_code=303)


# --- pages ------------------------------------------------------------------------------------------


@router.get("/assets/{name}")
async def console_asset(name: str) -> Response:
    if name not in page.ASSETS:
        return PlainTextResponse("not found", status_code=404)
    content, _ = page.asset(name)
    return Response(content, media_type=page.ASSETS[name],
                    headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})


@router.get("", response_class=HTMLResponse)
async def console_home(request: Request, ticket: int | None = None, notice: str | None = None) -> Response:
    agent = await _agent(request)
    if agent is None:
        return _login_page(request, translator(_guest_language(request)))
    t = translator(agent.language)
    return _html(await _render(request, agent, t, ticket, notice=t._(NOTICES[notice]) if notice in NOTICES else None))


async def _render(request: Request, agent: Agent, t: Translator, ticket_id: int | None, *,
                  notice: str | None = None, error: str | None = None) -> str:
    csrf = _console(request).sessions.csrf_token(request.cookies.get(COOKIE) or "")
    queue_html, ticket_html = await _panels(request, agent, t, ticket_id, csrf)
    return page.console_page(t, agent, csrf, queue_html, ticket_html, notice=notice, error=error)


async def _panels(request: Request, agent: Agent, t: Translator, ticket_id: int | None, csrf: str) -> tuple[str, str]:
    console = _console(request)
    queue_html = page.queue_panel(t, await console.desk.queue(), agent, csrf, ticket_id)
    details = await console.desk.details(ticket_id) if ticket_id else None
    if details is None:
        return queue_html, ""
    agents = {a.id: a for a in await agent_service.list_agents(console.desk.db)}
    invoices = None
    if details.links and details.ticket.status != "resolved":
        invoices = await invoice_service.list_invoices(console.billers, details.links, invoice_service.Filters())
    return queue_html, page.ticket_panel(t, details, agent, agents, invoices, csrf)


@router.get("/panels", response_class=HTMLResponse)
async def console_panels(request: Request, ticket: int | None = None) -> Response:
    """The live parts, for console.js: the queue and the open ticket's status and transcript."""
    agent = await _agent(request)
    if agent is None:
        return PlainTextResponse("signed out", status_code=401)
    t = translator(agent.language)
    console = _console(request)
    csrf = console.sessions.csrf_token(request.cookies.get(COOKIE) or "")
    queue_html = page.queue_panel(t, await console.desk.queue(), agent, csrf, ticket)
    live = ""
    details = await console.desk.details(ticket) if ticket else None
    if details is not None:
        agents = {a.id: a for a in await agent_service.list_agents(console.desk.db)}
        live = page.ticket_live(t, details, agent, agents)
    return _html(f'<div id="queue-next">{queue_html}</div><div id="ticket-live-next">{live}</div>')


@router.get("/stream")
async def console_stream(request: Request, ticket: int | None = None) -> Response:
    if await _agent(request) is None:
        return PlainTextResponse("signed out", status_code=401)
    console, cookie = _console(request), request.cookies.get(COOKIE)

    async def events():
        last, quiet = await console.desk.version(ticket), 0.0
        yield "retry: 2000\nevent: ready\ndata: {}\n\n"
        while not await request.is_disconnected():
            await asyncio.sleep(POLL_SECONDS)
            if await console.sessions.agent(cookie) is None:
                yield "event: expired\ndata: {}\n\n"
                return
            current = await console.desk.version(ticket)
            if current != last:
                last, quiet = current, 0.0
                yield "event: change\ndata: {}\n\n"
            else:
                quiet += POLL_SECONDS
                if quiet >= HEARTBEAT_SECONDS:  # keeps proxies from closing an idle stream
                    quiet = 0.0
                    yield ": ping\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


# --- signing in and out -------------------------------------------------------------------------------


@router.post("/login")
async def console_login(request: Request) -> Response:
    form = await _form(request)
    language = form.get("lang") if form.get("lang") in LANGUAGES else _guest_language(request)
    t = translator(language)
    console = _console(request)
    username = (form.get("username") or "").strip().lower()[:64]
    token, expected = form.get("login_token") or "", request.cookies.get(LOGIN_COOKIE) or ""
    if not token or not hmac.compare_digest(token, expected):
        log.warning("agent console: refused a sign-in without the form's token")
        return _login_page(request, t, 403, error=t._(FORGED_LOGIN), username=username)
    failures_key = f"agents:login-failures:{username}"
    if await console.store.get_json(failures_key + ":locked"):
        return _login_page(request, t, 429, error=t._(TOO_MANY_LOGINS), username=username)
    agent = await agent_service.authenticate(console.desk.db, username, form.get("password") or "")
    if agent is None:
        if await console.store.incr(failures_key, ttl=LOGIN_WINDOW) >= LOGIN_FAILURES:
            await console.store.set_json(failures_key + ":locked", True, ttl=LOGIN_WINDOW)
        log.info("agent console: failed sign-in")
        return _login_page(request, t, 401, error=t._(WRONG_LOGIN), username=username)
    await console.store.delete(failures_key)
    cookie = await console.sessions.open(agent)
    response = RedirectResponse("/agents", status_code=303)
    response.delete_cookie(LOGIN_COOKIE, path="/agents")
    response.set_cookie(COOKIE, cookie, max_age=int(console.sessions.lifetime.total_seconds()), path="/agents",
                        httponly=True, samesite="strict", secure=console.secure)
    return response


@router.post("/logout")
async def console_logout(request: Request) -> Response:
    agent, form, refused = await _acting_agent(request)
    if refused is not None:
        return refused
    await _console(request).sessions.close(request.cookies.get(COOKIE))
    response = RedirectResponse("/agents", status_code=303)
    response.delete_cookie(COOKIE, path="/agents")
    return response


@router.post("/language")
async def console_language(request: Request) -> Response:
    agent, form, refused = await _acting_agent(request)
    if refused is not None:
        return refused
    await agent_service.set_agent_language(_console(request).desk.db, agent.id, form.get("lang") or "")
    return _back()


# --- actions on a conversation ------------------------------------------------------------------------


@router.post("/tickets/{ticket_id}/{action}")
async def console_action(request: Request, ticket_id: int, action: str) -> Response:
    agent, form, refused = await _acting_agent(request)
    if refused is not None:
        return refused
    console, t = _console(request), translator(agent.language)
    desk = console.desk
    try:
        if action == "claim":
            await desk.claim(ticket_id, agent)
            return _back(ticket_id, "claimed")
        if action == "reply":
            await desk.reply(ticket_id, agent, form.get("text") or "")
            return _back(ticket_id, "sent")
        if action == "note":
            await desk.note(ticket_id, agent, form.get("text") or "")
            return _back(ticket_id, "noted")
        if action == "invoice":
            await _check_invoice(console, ticket_id, _int(form.get("link_id")), form.get("number") or "")
            await desk.send_invoice(ticket_id, agent, _int(form.get("link_id")), form.get("number") or "")
            return _back(ticket_id, "sent")
        if action == "payment-link":
            await desk.send_payment_link(ticket_id, agent, _int(form.get("link_id")))
            return _back(ticket_id, "sent")
        if action == "hand-over":
            to_agent = _int(form.get("agent_id"))
            if to_agent < 0 or not (form.get("agent_id") or "").strip():
                raise UnknownAgent("no agent chosen")
            await desk.hand_over(ticket_id, agent, to_agent)
            return _back(ticket_id, "handed")
        if action == "close":
            await desk.close(ticket_id, agent)
            return _back(ticket_id, "closed")
    except FatouraError as error:
        return _html(await _render(request, agent, t, ticket_id, error=t.error(error)), 409)
    return _html(page.message_page(t, t._("This action is not allowed.")), 404)


async def _check_invoice(console: Console, ticket_id: int, link_id: int, number: str) -> None:
    """The invoice exists at the customer's biller (so the PDF can be rendered when delivered)."""
    details = await console.desk.details(ticket_id)
    link = await linking.get_link(console.desk.db, details.ticket.user_id, link_id) if details else None
    if link is None:
        raise NotTheirs(f"link {link_id}")
    await invoice_service.get_invoice(console.billers, link, number)


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return -1
