"""The web chat adapter and its socket: frames in, events to the conversation, replies out as JSON.

A tiny scripted conversation stands in for the real one: these tests check the adapter, not the dialogue.
"""
from __future__ import annotations

import json
import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from bot.channels.webchat import (
    FileCache,
    FrameBudget,
    FrameError,
    WebChatAdapter,
    new_session_id,
    parse_frame,
)
from bot.conversation.events import Event, EventKind
from bot.conversation.replies import WEBCHAT_LIMITS, Button, DeleteMessage, Document, Image, Text
from core.i18n import translator
from webhooks.webchat import accepted_language, content_disposition, install_webchat

PDF = b"%PDF-1.4\n% Fatoura test invoice\n" + bytes(range(256)) + b"\n%%EOF\n"


class ScriptedConversation:
    """Answers a few fixed events, records what it was handed, and dedupes update ids like the real one."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._seen: set[tuple[str, str]] = set()

    async def handle(self, event: Event, early=None) -> list:  # noqa: ANN001
        self.events.append(event)
        if event.update_id:
            if (event.chat_id, event.update_id) in self._seen:
                return []
            self._seen.add((event.chat_id, event.update_id))
        if event.kind is EventKind.START:
            return [Text("Bonjour ! Que voulez-vous faire ?", (
                (Button("Factures impayées", "unpaid"), Button("Partager mon numéro", request_contact=True)),
                (Button("Payer en ligne", url="https://pay.example.ma/p/abc"),),
            ))]
        if event.kind is EventKind.BUTTON and event.data == "unpaid":
            return [Text("Vous avez 2 factures impayées.", ((Button("Menu", "menu"),),), replace=True)]
        if event.kind is EventKind.BUTTON and event.data == "ar":
            return [Text("تم تغيير اللغة.", rtl=True, replace=True)]
        if event.kind is EventKind.TEXT and event.text == "pdf":
            return [Document("facture Février 2024.pdf", PDF, caption="Votre facture")]
        if event.kind is EventKind.TEXT and event.text == "qr":
            return [Image(b"\x89PNG\r\n\x1a\nfake", filename="qr.png", caption="Code QR")]
        if event.kind is EventKind.TEXT and event.text.startswith("4111"):
            return [DeleteMessage(event.message_id), Text("Ne partagez jamais votre carte ici.")]
        if event.kind is EventKind.TEXT and event.text == "boom":
            raise RuntimeError("the dialogue broke")
        return [Text(f"Vous avez écrit : {event.text or event.data}")]


@pytest.fixture
def conversation() -> ScriptedConversation:
    return ScriptedConversation()


@pytest.fixture
def app(conversation) -> FastAPI:
    app = FastAPI()
    install_webchat(app, conversation)
    return app


@pytest.fixture
def client(app):
    with TestClient(app) as client:
        yield client


@pytest.fixture
def session() -> str:
    return new_session_id()


def frame(session: str, type_: str, id_: str, **fields) -> str:
    return json.dumps({"type": type_, "session": session, "id": id_, **fields}, ensure_ascii=False)


def receive_until_ack(ws, client_id: str) -> list[dict]:
    """The frames a turn produced, up to and without its ack."""
    frames = []
    while True:
        message = ws.receive_json()
        if message == {"type": "ack", "id": client_id}:
            return frames
        frames.append(message)


def test_amina_opens_the_chat_and_sees_the_menu_with_web_buttons(client, conversation, session):
    with client.websocket_connect("/chat/ws") as ws:
        ws.send_text(frame(session, "start", "c1", language="fr-FR"))
        [menu] = receive_until_ack(ws, "c1")

    [event] = conversation.events
    assert event == Event(channel="webchat", chat_id=session, kind=EventKind.START, text="/start",
                          update_id="c1", language="fr-FR")
    assert menu["type"] == "text" and menu["text"] == "Bonjour ! Que voulez-vous faire ?"
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", menu["id"]) and menu["rtl"] is False
    # "Share my number" needs a phone: on the web she types it, so that button is gone.
    assert menu["buttons"] == [[{"label": "Factures impayées", "data": "unpaid"}],
                               [{"label": "Payer en ligne", "url": "https://pay.example.ma/p/abc"}]]
    assert "replace_id" not in menu


def test_typed_text_becomes_a_text_event_and_the_reply_comes_back(client, conversation, session):
    with client.websocket_connect("/chat/ws") as ws:
        ws.send_text(frame(session, "text", "c2", text="  06 61 00 00 00 "))
        [reply] = receive_until_ack(ws, "c2")

    [event] = conversation.events
    assert (event.kind, event.text, event.chat_id, event.update_id, event.message_id) == (
        EventKind.TEXT, "06 61 00 00 00", session, "c2", "c2")
    assert reply["text"] == "Vous avez écrit : 06 61 00 00 00"


def test_a_pressed_button_replaces_the_message_it_came_from(client, conversation, session):
    with client.websocket_connect("/chat/ws") as ws:
        ws.send_text(frame(session, "start", "c1"))
        [menu] = receive_until_ack(ws, "c1")
        ws.send_text(frame(session, "button", "c2", data="unpaid", source_id=menu["id"]))
        [listing] = receive_until_ack(ws, "c2")

    press = conversation.events[-1]
    assert (press.kind, press.data, press.source_message_id) == (EventKind.BUTTON, "unpaid", menu["id"])
    assert listing["replace_id"] == menu["id"] and listing["id"] != menu["id"]
    assert listing["buttons"] == [[{"label": "Menu", "data": "menu"}]]


def test_an_arabic_reply_is_marked_rtl(client, session):
    with client.websocket_connect("/chat/ws") as ws:
        ws.send_text(frame(session, "button", "c1", data="ar"))
        [reply] = receive_until_ack(ws, "c1")
    assert reply["rtl"] is True and reply["text"] == "تم تغيير اللغة."
    assert "replace_id" not in reply  # no source bubble named: nothing to replace


def test_commands_typed_or_sent_become_command_events(client, conversation, session):
    with client.websocket_connect("/chat/ws") as ws:
        ws.send_text(frame(session, "text", "c1", text="/Help"))
        receive_until_ack(ws, "c1")
        ws.send_text(frame(session, "command", "c2", text="forget"))
        receive_until_ack(ws, "c2")
        ws.send_text(frame(session, "command", "c3", text="/start"))
        receive_until_ack(ws, "c3")
    assert [(e.kind, e.text) for e in conversation.events] == [
        (EventKind.COMMAND, "help"), (EventKind.COMMAND, "forget"), (EventKind.START, "/start")]


def test_the_invoice_pdf_is_a_download_link_serving_the_exact_bytes(client, session):
    with client.websocket_connect("/chat/ws") as ws:
        ws.send_text(frame(session, "text", "c1", text="pdf"))
        [document] = receive_until_ack(ws, "c1")

    assert document["type"] == "document"
    assert (document["filename"], document["caption"], document["mime_type"], document["size"]) == (
        "facture Février 2024.pdf", "Votre facture", "application/pdf", len(PDF))
    assert document["url"].startswith("/chat/files/")
    response = client.get(document["url"])
    assert response.status_code == 200
    assert response.content == PDF
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"] == (
        "attachment; filename=\"facture F_vrier 2024.pdf\"; filename*=UTF-8''facture%20F%C3%A9vrier%202024.pdf")
    assert response.headers["cache-control"] == "private, no-store"


def test_an_image_is_shown_inline_from_the_cache(client, session):
    with client.websocket_connect("/chat/ws") as ws:
        ws.send_text(frame(session, "text", "c1", text="qr"))
        [image] = receive_until_ack(ws, "c1")
    assert (image["type"], image["filename"], image["mime_type"]) == ("image", "qr.png", "image/png")
    response = client.get(image["url"])
    assert response.content == b"\x89PNG\r\n\x1a\nfake"
    assert response.headers["content-disposition"] == 'inline; filename="qr.png"'


def test_an_unknown_or_expired_download_is_a_localized_404(client):
    response = client.get("/chat/files/nope", headers={"Accept-Language": "en-GB,en;q=0.8"})
    assert response.status_code == 404
    assert response.text == translator("en")._(
        "This download has expired. Ask for the document again in the chat.")


def test_a_card_number_bubble_is_deleted_from_the_page(client, session):
    with client.websocket_connect("/chat/ws") as ws:
        ws.send_text(frame(session, "text", "c9", text="4111 1111 1111 1111"))
        delete, warning = receive_until_ack(ws, "c9")
    assert delete == {"type": "delete", "id": "c9"}
    assert warning["type"] == "text"


@pytest.mark.parametrize("garbage, code", [
    ("not json", "bad_json"),
    ("[1, 2]", "bad_json"),
    ('{"type": "start"}', "bad_frame"),  # no id
    ('{"type": "text", "session": "S", "id": "a b"}', "bad_frame"),
    ("x" * 9000, "too_large"),
])
def test_garbage_gets_an_error_frame_and_the_socket_lives_on(client, conversation, session, garbage, code):
    with client.websocket_connect("/chat/ws") as ws:
        ws.send_text(garbage)
        error = ws.receive_json()
        assert error["type"] == "error" and error["code"] == code and "ref" not in error
        ws.send_text(frame(session, "text", "c1", text="encore là ?"))
        [reply] = receive_until_ack(ws, "c1")
    assert reply["text"] == "Vous avez écrit : encore là ?"
    assert len(conversation.events) == 1


@pytest.mark.parametrize("fields, code", [
    ({"type": "sticker"}, "bad_type"),
    ({"type": "text", "text": "   "}, "bad_frame"),
    ({"type": "text", "text": 42}, "bad_frame"),
    ({"type": "text", "text": "é" * 2100}, "too_large"),  # 4200 bytes of text
    ({"type": "button", "data": "x" * 65}, "bad_frame"),
    ({"type": "button", "data": "menu", "source_id": "<b>"}, "bad_frame"),
    ({"type": "command", "text": "rm -rf"}, "bad_frame"),
])
def test_a_malformed_message_is_refused_with_its_id(client, conversation, session, fields, code):
    with client.websocket_connect("/chat/ws") as ws:
        ws.send_text(json.dumps({"session": session, "id": "c7", **fields}, ensure_ascii=False))
        error = ws.receive_json()
        ws.send_text(frame(session, "text", "c8", text="ok"))
        receive_until_ack(ws, "c8")
    assert (error["type"], error["code"], error["ref"]) == ("error", code, "c7")
    assert [e.update_id for e in conversation.events] == ["c8"]


def test_binary_garbage_is_refused_too(client, session):
    with client.websocket_connect("/chat/ws") as ws:
        ws.send_bytes(b"\xff\xfe\x00")
        assert ws.receive_json()["code"] == "bad_json"
        ws.send_text(frame(session, "start", "c1"))
        assert receive_until_ack(ws, "c1")


@pytest.mark.parametrize("bad", [None, "", "short", "x" * 23, "../../etc/passwd!!!!!!", "a" * 21 + "="])
def test_a_frame_with_a_bad_session_id_is_refused(client, conversation, bad):
    with client.websocket_connect("/chat/ws") as ws:
        ws.send_text(json.dumps({"type": "text", "session": bad, "id": "c1", "text": "salam"}))
        error = ws.receive_json()
    assert (error["type"], error["code"], error["ref"]) == ("error", "bad_session", "c1")
    assert conversation.events == []


def test_one_socket_speaks_for_one_session_only(client, conversation, session):
    other = new_session_id()
    with client.websocket_connect("/chat/ws") as ws:
        ws.send_text(frame(session, "start", "c1"))
        receive_until_ack(ws, "c1")
        ws.send_text(frame(other, "text", "c2", text="je suis quelqu'un d'autre"))
        error = ws.receive_json()
    assert (error["code"], error["ref"]) == ("bad_session", "c2")
    assert [e.chat_id for e in conversation.events] == [session]


def test_a_resent_message_is_handled_once(client, conversation, session):
    """After a reconnect the page re-sends what was not acknowledged; the same id has no second effect."""
    with client.websocket_connect("/chat/ws") as ws:
        ws.send_text(frame(session, "text", "c1", text="bonjour"))
        assert len(receive_until_ack(ws, "c1")) == 1
    with client.websocket_connect("/chat/ws") as ws:
        ws.send_text(frame(session, "text", "c1", text="bonjour"))
        assert receive_until_ack(ws, "c1") == []
    assert [e.update_id for e in conversation.events] == ["c1", "c1"]


def test_a_failing_conversation_gets_an_error_frame_not_a_dead_socket(client, session):
    with client.websocket_connect("/chat/ws") as ws:
        ws.send_text(frame(session, "text", "c1", text="boom"))
        assert ws.receive_json() == {"type": "error", "code": "unavailable",
                                     "message": "the message could not be handled", "ref": "c1"}
        ws.send_text(frame(session, "text", "c2", text="et maintenant ?"))
        assert receive_until_ack(ws, "c2")[0]["text"] == "Vous avez écrit : et maintenant ?"


def test_a_flood_is_slowed_down(client, conversation, session):
    with client.websocket_connect("/chat/ws") as ws:
        for n in range(31):
            ws.send_text(frame(session, "text", f"c{n}", text="spam"))
        codes = []
        for n in range(30):
            receive_until_ack(ws, f"c{n}")
        codes.append(ws.receive_json())
    assert codes == [{"type": "error", "code": "slow_down", "message": "too many frames; wait a few seconds",
                      "ref": "c30"}]
    assert len(conversation.events) == 30


def test_a_payment_confirmation_is_pushed_to_the_open_page(app, client, session):
    webchat = app.state.webchat
    with client.websocket_connect("/chat/ws") as ws:
        ws.send_text(frame(session, "start", "c1"))
        receive_until_ack(ws, "c1")
        delivered = ws.portal.call(webchat.push, session, [Text("Paiement reçu : 199,00 MAD.")])
        pushed = ws.receive_json()
    assert delivered == 1
    assert (pushed["type"], pushed["text"]) == ("text", "Paiement reçu : 199,00 MAD.")
    assert client.portal.call(webchat.push, session, [Text("plus personne")]) == 0


def test_before_install_the_socket_is_refused():
    from starlette.websockets import WebSocketDisconnect

    from webhooks.webchat import router

    app = FastAPI()
    app.include_router(router)
    with TestClient(app) as client, pytest.raises(WebSocketDisconnect) as refused:
        with client.websocket_connect("/chat/ws"):
            pass
    assert refused.value.code == 1013


def test_install_includes_the_routes_once(conversation):
    app = FastAPI()
    first = install_webchat(app, conversation)
    routes = len(app.router.routes)
    second = install_webchat(app, ScriptedConversation())
    assert app.state.webchat is second and first is not second
    assert len(app.router.routes) == routes


# --- the page ---------------------------------------------------------------------------------


def page_config(html: str) -> dict:
    blob = re.search(r'<script type="application/json" id="fatoura-config">(.*?)</script>', html, re.S).group(1)
    return json.loads(blob)


def test_the_page_is_served_in_arabic_right_to_left(client):
    response = client.get("/chat?lang=ar")
    assert response.status_code == 200
    html = response.text
    assert '<html lang="ar" dir="rtl">' in html
    assert "<title>Fatoura</title>" in html
    ar = translator("ar")
    assert f'placeholder="{ar._("Type a message")}"' in html
    config = page_config(html)
    assert config["lang"] == "ar" and config["language_hint"] == "ar" and config["socket"] == "/chat/ws"
    assert config["rtl_languages"] == ["ar"]
    assert config["strings"]["ar"]["send"] == ar._("Send")
    assert config["strings"]["en"]["reconnecting"] == "Reconnecting…"
    assert set(config["strings"]) == {"fr", "ar", "en"}
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp


def test_the_page_follows_the_browser_language_and_loads_nothing_from_elsewhere(client):
    html = client.get("/chat", headers={"Accept-Language": "de-DE,en;q=0.9,fr;q=0.8"}).text
    assert '<html lang="en" dir="ltr">' in html
    assert page_config(html)["language_hint"] is None  # the page sends navigator.language
    assert not re.search(r'(src|href)="(https?:)?//', html)
    for asset in re.findall(r'(?:src|href)="(/chat/assets/[^"]+)"', html):
        response = client.get(asset)
        assert response.status_code == 200 and response.content
    assert "http" not in client.get("/chat/assets/chat.css").text
    assert client.get("/chat/assets/chat.html").status_code == 404


def test_the_default_page_is_french(client):
    assert '<html lang="fr" dir="ltr">' in client.get("/chat?lang=xx").text


def test_the_config_blob_cannot_break_out_of_its_script_tag(monkeypatch):
    from webhooks import webchat

    monkeypatch.setitem(webchat.CHROME, "send", "</script><script>alert(1)</script>")
    html = webchat.render_page("fr", explicit=False)
    assert html.count("</script>") == 2  # the config blob's and chat.js's
    assert page_config(html)["strings"]["fr"]["send"] == "</script><script>alert(1)</script>"


@pytest.mark.parametrize("header, language", [
    ("ar-MA,ar;q=0.9,fr;q=0.8", "ar"), ("en-US", "en"), ("de, en;q=0.2, fr;q=0.5", "fr"),
    ("es", None), ("", None), (None, None), ("fr;q=0, en;q=bad, ar;q=0.1", "ar"),
])
def test_accept_language(header, language):
    assert accepted_language(header) == language


def test_content_disposition_ascii_name():
    assert content_disposition("attachment", "facture-0323.pdf") == 'attachment; filename="facture-0323.pdf"'
    assert content_disposition("attachment", 'a"b.pdf').endswith("filename*=UTF-8''a%22b.pdf")


# --- the adapter without a socket ---------------------------------------------------------------


def test_parse_frame_keeps_a_sane_language_and_drops_a_strange_one():
    session = new_session_id()
    assert parse_frame(frame(session, "start", "c1", language="ar-MA")).language == "ar-MA"
    assert parse_frame(frame(session, "start", "c1", language="<script>")).language is None
    assert parse_frame(frame(session, "start", "c1", language=7)).language is None


def test_parse_frame_errors_say_what_to_fix():
    with pytest.raises(FrameError) as refused:
        parse_frame(frame(new_session_id(), "voice", "c1"))
    assert refused.value.frame() == {"type": "error", "code": "bad_type",
                                     "message": "'type' must be one of start, text, button, command", "ref": "c1"}


def test_long_text_is_split_and_buttons_fit_the_web_limits():
    adapter = WebChatAdapter()
    long_text = "\n".join(f"Facture {n:03d} — 199,00 MAD" for n in range(2000))
    row = tuple(Button(f"Bouton {n} " + "x" * 100, f"b{n}") for n in range(6))
    row += (Button("javascript", url="javascript:alert(1)"), Button("Payer", url="/pay/tok"))
    frames = adapter.render([Text(long_text, (row,), replace=True)], source_message_id="s1")
    assert len(frames) > 1 and all(len(f["text"]) <= WEBCHAT_LIMITS.max_text for f in frames)
    assert "\n".join(f["text"] for f in frames) == long_text
    assert frames[0]["replace_id"] == "s1" and all("replace_id" not in f for f in frames[1:])
    assert all(f["buttons"] == [] for f in frames[:-1])
    rows = frames[-1]["buttons"]
    assert [len(r) for r in rows] == [4, 3]  # 6 data buttons + 1 link, 4 a row; the javascript: link is dropped
    assert all(len(b["label"]) <= WEBCHAT_LIMITS.max_button_label for r in rows for b in r)
    assert rows[0][0]["label"].endswith("…")
    assert rows[1][-1] == {"label": "Payer", "url": "/pay/tok"}


def test_only_the_first_replace_edits_the_pressed_message():
    frames = WebChatAdapter().render([Text("a", replace=True), Text("b", replace=True)], source_message_id="s1")
    assert [f.get("replace_id") for f in frames] == ["s1", None]


def test_file_cache_expires_and_stays_bounded():
    now = [0.0]
    cache = FileCache(max_items=3, max_bytes=10, ttl=60, clock=lambda: now[0])
    a = cache.put("a.pdf", b"aaaa", "application/pdf")
    b = cache.put("b.pdf", b"bbbb", "application/pdf")
    assert cache.get(a).content == b"aaaa"  # a is now the most recently used
    c = cache.put("c.pdf", b"cccc", "application/pdf")  # 12 bytes > 10: the least recently used (b) goes
    assert cache.get(b) is None and cache.get(a) and cache.get(c)
    d, e = cache.put("d", b"", "x/y"), cache.put("e", b"", "x/y")
    assert len(cache) == 3 and cache.get(a) is None
    now[0] = 61
    assert cache.get(c) is None and cache.get(d) is None and cache.get(e) is None
    big = cache.put("big.pdf", b"z" * 50, "application/pdf")  # bigger than the cache: kept alone
    assert cache.get(big) and len(cache) == 1


def test_frame_budget_refills_each_window():
    now = [0.0]
    budget = FrameBudget(limit=2, window=10, clock=lambda: now[0])
    assert [budget.allow() for _ in range(3)] == [True, True, False]
    now[0] = 10
    assert budget.allow()
