"""The agent console over HTTP (the real app under uvicorn): signing in, claiming, answering,
sending a PDF and a payment link, closing; and every refusal leaves everything as it was."""
from __future__ import annotations

import asyncio
import contextlib
import re
from datetime import timedelta
from html import unescape

import httpx
import pytest
from sqlalchemy import func, select

from core.config import Settings
from core.models import AgentSession, HandoffTicket, OutboxMessage, TranscriptEntry, utcnow
from core.services import agents as agent_service
from tests.browser import serve
from tests.chat import Chat
from tests.test_conversation import link_iam
from webhooks.app import create_app

PASSWORD = "correct horse battery"


async def sign_in(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    """As the console's page does: open the sign-in page (its form token), then post the form."""
    token = re.search(r'name="login_token" value="([^"]+)"', (await client.get("/agents")).text).group(1)
    return await client.post("/agents/login", data={"username": username, "password": password, "login_token": token})


class Desk:
    def __init__(self, app, base: str, db) -> None:  # noqa: ANN001
        self.app, self.base, self.db = app, base, db

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base, follow_redirects=False, timeout=10)

    async def signed_in(self, username: str) -> httpx.AsyncClient:
        client = self.client()
        response = await sign_in(client, username, PASSWORD)
        assert response.status_code == 303, response.text
        return client

    def customer(self, chat_id: str, language: str = "en") -> Chat:
        return Chat(self.app.state.conversation, chat_id=chat_id, language=language)

    async def state(self) -> tuple:
        """Everything an action could change."""
        async with self.db.session() as session:
            tickets = (await session.execute(select(HandoffTicket.id, HandoffTicket.status, HandoffTicket.agent_id,
                                                    HandoffTicket.rating).order_by(HandoffTicket.id))).all()
            entries = await session.scalar(select(func.count()).select_from(TranscriptEntry))
            messages = await session.scalar(select(func.count()).select_from(OutboxMessage))
        return tuple(tickets), entries, messages


def csrf_of(page: str) -> str:
    return unescape(re.search(r'name="csrf" value="([^"]+)"', page).group(1))


@contextlib.asynccontextmanager
async def running(db):  # noqa: ANN001
    settings = Settings(_env_file=None, sandbox=True, agent_session_minutes=30)
    app = create_app(settings, db=db)
    async with serve(app) as base:
        await agent_service.add_agent(db, "karim", PASSWORD, display_name="Karim")
        await agent_service.add_agent(db, "salma", PASSWORD, display_name="Salma")
        yield Desk(app, base, db)


@pytest.fixture
async def desk(seeded_db):
    async with running(seeded_db) as desk:
        yield desk


async def linked_customer_asks_for_help(desk: Desk, chat_id: str = "web-amina") -> Chat:
    amina = desk.customer(chat_id)
    await link_iam(amina)
    await amina.press("Menu")
    await amina.press("Talk to an agent")
    await amina.say("The February invoice looks too high")
    return amina


async def test_karim_claims_answers_sends_the_pdf_and_a_payment_link_then_closes(desk):
    amina = await linked_customer_asks_for_help(desk)
    karim = await desk.signed_in("karim")
    home = (await karim.get("/agents")).text
    assert "The February invoice looks too high" in home and "attend depuis 0 min" in home
    assert "web-amina" not in home  # the web chat's id is the key to her chat: never shown
    (ticket_id,) = [int(n) for n in re.findall(r'data-ticket="(\d+)"', home)]
    token = csrf_of(home)

    claimed = await karim.post(f"/agents/tickets/{ticket_id}/claim", data={"csrf": token})
    assert claimed.status_code == 303
    page = (await karim.get(f"/agents?ticket={ticket_id}")).text
    assert "Tenue par vous" in page and "Amina El Idrissi" in page and "0000528605022017" in page
    assert "299,81" in page or "299.81" in page  # her unpaid invoice, formatted for the console's locale

    for action, data in (("reply", {"text": "Hello, I am checking your invoice."}),
                         ("note", {"text": "TVA line seems fine"}),
                         ("invoice", {"link_id": "1", "number": "0000528605022017"}),
                         ("payment-link", {"link_id": "1"}),
                         ("close", {})):
        response = await karim.post(f"/agents/tickets/{ticket_id}/{action}", data={"csrf": token, **data})
        assert response.status_code == 303, (action, response.text[:500])

    async with desk.db.session() as session:
        sent = (await session.scalars(select(OutboxMessage).where(OutboxMessage.chat_id == "web-amina")
                                      .order_by(OutboxMessage.id))).all()
    assert {m.kind for m in sent} == {"agent_reply"}
    texts = [m.payload["text"] for m in sent]
    assert "Karim has joined the conversation" in texts[0]
    assert "Karim: Hello, I am checking your invoice." in texts
    assert not any("TVA line" in text for text in texts)
    assert sent[2].payload["document"]["kind"] == "invoice" and sent[2].payload["params"] == {
        "agent": "Karim", "text": sent[2].payload["text"]}
    assert sent[3].payload["buttons"] == [[{"label": "Pay", "data": "$|1"}]]
    assert "rate" in texts[-1]

    # Delivered like any outbox message: the PDF is rendered from the biller at delivery.
    from bot.conversation.outbox_replies import payload_to_replies
    from bot.conversation.replies import Document

    replies = await payload_to_replies(sent[2].payload, desk.db, desk.app.state.fatoura.billers)
    (pdf,) = [r for r in replies if isinstance(r, Document)]
    assert pdf.filename == "facture-0000528605022017.pdf" and pdf.content.startswith(b"%PDF")

    await amina.press_data(sent[-1].payload["buttons"][1][1]["data"])  # ★★★★★
    assert "Thank you for your rating" in amina.text
    async with desk.db.session() as session:
        assert (await session.get(HandoffTicket, ticket_id)).rating == 5


async def test_a_wrong_password_opens_no_session(desk):
    client = desk.client()
    response = await sign_in(client, "karim", "not the password")
    assert response.status_code == 401 and "Identifiant ou mot de passe incorrect" in response.text
    assert "fatoura_agent" not in response.cookies
    unknown = await sign_in(client, "nobody", PASSWORD)
    assert unknown.status_code == 401
    async with desk.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(AgentSession)) == 0
    assert "Se connecter" in (await client.get("/agents")).text


async def test_a_sign_in_posted_from_another_site_opens_no_session(desk):
    # A page elsewhere can post the form, but not with the token of our page's cookie.
    forged = await desk.client().post("/agents/login", data={"username": "karim", "password": PASSWORD})
    assert forged.status_code == 403 and "fatoura_agent" not in forged.cookies
    other = desk.client()
    await other.get("/agents")
    replayed = await desk.client().post("/agents/login", data={
        "username": "karim", "password": PASSWORD, "login_token": other.cookies["fatoura_login"]})
    assert replayed.status_code == 403 and "fatoura_agent" not in replayed.cookies
    async with desk.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(AgentSession)) == 0


async def test_repeated_wrong_passwords_lock_the_username_for_a_while(desk):
    client = desk.client()
    for _ in range(5):
        await sign_in(client, "salma", "guess guess guess")
    locked = await sign_in(client, "salma", PASSWORD)
    assert locked.status_code == 429 and "fatoura_agent" not in locked.cookies


async def test_an_expired_session_is_refused_and_changes_nothing(desk):
    await desk.customer("web-omar").start()
    await desk.customer("web-omar").press_data("Ts")
    karim = await desk.signed_in("karim")
    token = csrf_of((await karim.get("/agents")).text)
    agent = (await agent_service.list_agents(desk.db))[0]
    sessions = desk.app.state.agents.sessions
    old = await sessions.open(agent, now=utcnow() - timedelta(minutes=31))
    expired = desk.client()
    expired.cookies.set("fatoura_agent", old, path="/agents")
    before = await desk.state()
    response = await expired.post("/agents/tickets/1/claim", data={"csrf": sessions.csrf_token(old)})
    assert response.status_code == 401 and "Votre session a expiré" in response.text
    assert "Se connecter" in (await expired.get("/agents")).text
    assert (await expired.get("/agents/stream")).status_code == 401
    assert await desk.state() == before
    assert token  # the live session of the same agent still works
    assert (await karim.post("/agents/tickets/1/claim", data={"csrf": token})).status_code == 303


async def test_forged_requests_without_session_or_token_are_refused(desk):
    omar = desk.customer("web-omar")
    await omar.start()
    await omar.press_data("Ts")
    karim = await desk.signed_in("karim")
    token = csrf_of((await karim.get("/agents")).text)
    await karim.post("/agents/tickets/1/claim", data={"csrf": token})
    before = await desk.state()
    stranger = desk.client()
    assert (await stranger.post("/agents/tickets/1/reply", data={"text": "hi", "csrf": token})).status_code == 401
    assert (await karim.post("/agents/tickets/1/reply", data={"text": "forged"})).status_code == 403
    assert (await karim.post("/agents/tickets/1/close", data={"csrf": "0" * 32})).status_code == 403
    salma = await desk.signed_in("salma")
    # Another agent's token is bound to another session.
    assert (await salma.post("/agents/tickets/1/close", data={"csrf": token})).status_code == 403
    tampered = desk.client()
    tampered.cookies.set("fatoura_agent", karim.cookies["fatoura_agent"][:-2] + "00", path="/agents")
    assert (await tampered.post("/agents/tickets/1/close", data={"csrf": token})).status_code == 401
    assert await desk.state() == before


async def test_an_agent_acting_on_a_conversation_held_by_another_is_refused(desk):
    amina = await linked_customer_asks_for_help(desk)
    karim, salma = await desk.signed_in("karim"), await desk.signed_in("salma")
    karim_token = csrf_of((await karim.get("/agents")).text)
    salma_token = csrf_of((await salma.get("/agents")).text)
    await karim.post("/agents/tickets/1/claim", data={"csrf": karim_token})
    before = await desk.state()
    for action, data in (("reply", {"text": "I take over"}), ("note", {"text": "x"}),
                         ("invoice", {"link_id": "1", "number": "0000528605022017"}),
                         ("payment-link", {"link_id": "1"}), ("hand-over", {"agent_id": "2"}), ("close", {}),
                         ("claim", {})):
        response = await salma.post(f"/agents/tickets/1/{action}", data={"csrf": salma_token, **data})
        assert response.status_code == 409, action
    assert "Karim a déjà pris cette conversation" in response.text
    assert await desk.state() == before
    await amina.say("still there?")


async def test_two_agents_pressing_claim_at_once_one_gets_it_the_other_is_told(desk):
    await linked_customer_asks_for_help(desk)
    karim, salma = await desk.signed_in("karim"), await desk.signed_in("salma")
    tokens = [csrf_of((await c.get("/agents")).text) for c in (karim, salma)]
    responses = await asyncio.gather(*(c.post("/agents/tickets/1/claim", data={"csrf": t})
                                       for c, t in zip((karim, salma), tokens)))
    assert sorted(r.status_code for r in responses) == [303, 409]
    loser = next(r for r in responses if r.status_code == 409)
    assert "a déjà pris cette conversation" in loser.text


async def test_the_console_hears_of_a_new_customer_message_without_a_refresh(desk):
    amina = await linked_customer_asks_for_help(desk)
    karim = await desk.signed_in("karim")
    async with karim.stream("GET", "/agents/stream?ticket=1") as stream:
        lines = stream.aiter_lines()
        assert await asyncio.wait_for(anext(lines), 5) == "retry: 2000"
        await amina.say("Are you there?")
        seen = []
        while "event: change" not in seen:
            seen.append(await asyncio.wait_for(anext(lines), 5))
    panels = (await karim.get("/agents/panels?ticket=1")).text
    assert "Are you there?" in panels


async def test_what_customers_write_is_shown_as_text_never_as_markup(desk):
    mallory = desk.customer("web-mallory")
    await mallory.start()
    await mallory.press("Talk to an agent")
    await mallory.say('<script>alert(1)</script><img src=x onerror="alert(2)">')
    karim = await desk.signed_in("karim")
    page = (await karim.get("/agents?ticket=1")).text
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "script-src 'self'" in (await karim.get("/agents")).headers["content-security-policy"]


async def test_the_console_speaks_arabic_right_to_left_when_the_agent_chooses_it(desk):
    karim = await desk.signed_in("karim")
    token = csrf_of((await karim.get("/agents")).text)
    assert (await karim.post("/agents/language", data={"csrf": token, "lang": "ar"})).status_code == 303
    page = (await karim.get("/agents")).text
    assert 'dir="rtl"' in page and 'lang="ar"' in page


def test_fatoura_agents_add_hashes_the_password_and_refuses_a_short_one(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path}/agents.db", "LOG_LEVEL": "WARNING"}
    run = lambda *args, stdin="": subprocess.run([sys.executable, "-m", "fatoura.cli", "agents", *args],  # noqa: E731
                                                 input=stdin, env=env, capture_output=True, text=True, timeout=60)
    added = run("add", "karim", "--name", "Karim", "--password-stdin", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    assert run("add", "salma", "--password-stdin", stdin="short\n").returncode == 2
    listed = run("list")
    assert "karim\tKarim\tactive" in listed.stdout and "salma" not in listed.stdout
    import sqlite3

    (stored,) = sqlite3.connect(f"{tmp_path}/agents.db").execute("SELECT password_hash FROM agents").fetchone()
    assert stored.startswith("scrypt$") and PASSWORD not in stored
    assert agent_service.verify_password(PASSWORD, stored) and not agent_service.verify_password("wrong", stored)
