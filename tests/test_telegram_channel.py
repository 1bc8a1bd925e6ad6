"""The Telegram adapter against the fake Bot API server, with the real aiogram client.

The conversation here is a script (it records the Events and answers fixed Replies): these tests
check the adapter's receiving and rendering only. The dialogue itself is tested end to end in the
conversation's own tests.
"""
from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramForbiddenError
from aiogram.types import Update
from fastapi import FastAPI
from pydantic import SecretStr

from bot.channels.telegram.receive import event_from_update
from bot.channels.telegram.runner import set_webhook, start_polling_task
from bot.channels.telegram.send import TelegramSender
from bot.conversation.events import Event, EventKind
from bot.conversation.replies import Button, DeleteMessage, Document, Image, Reply, Text
from core.config import Settings
from tests.fakes.bot_api import TINY_PNG, FakeBotAPI
from tests.fakes.echo_bot import LocalAiohttpSession, make_bot
from webhooks.telegram import SECRET_HEADER, close_telegram, install_telegram

TOKEN = "123456:TEST-token"
SECRET = "s3cret-Token_42"
AMINA, YOUSSEF = 1001, 1002

Answer = Callable[[Event], Any]


class Script:
    """A stand-in for the conversation: records every Event, answers what `answer` returns."""

    def __init__(self, answer: Answer | None = None) -> None:
        self.events: list[Event] = []
        self.answer = answer or (lambda event: [Text(f"got {event.kind.value}")])

    async def handle(self, event: Event, early=None) -> list[Reply]:  # noqa: ANN001
        self.events.append(event)
        replies = self.answer(event)
        return await replies if inspect.isawaitable(replies) else replies

    def kinds(self) -> list[tuple[EventKind, str | None]]:
        return [(e.kind, e.text) for e in self.events]


def settings_for(server: FakeBotAPI, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(telegram_bot_token=SecretStr(TOKEN), telegram_api_base=server.base_url,
                                  telegram_webhook_secret=SecretStr(SECRET), public_base_url="http://127.0.0.1:8000")
    values.update(overrides)
    return Settings(_env_file=None, **values)


def session_for(server: FakeBotAPI) -> LocalAiohttpSession:
    return LocalAiohttpSession(api=TelegramAPIServer.from_base(server.base_url))


@pytest.fixture
async def server() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI(token=TOKEN) as fake:
        yield fake


@asynccontextmanager
async def polling(server: FakeBotAPI, script: Script) -> AsyncIterator[None]:
    task = await start_polling_task(settings_for(server), script, session=session_for(server))
    try:
        await server.wait_for(lambda calls: server.poll_count > 0)
        yield
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_amina_starts_in_arabic_then_types_and_uses_commands(server: FakeBotAPI) -> None:
    amina = server.user(AMINA, first_name="Amina", language_code="ar")
    script = Script()
    async with polling(server, script):
        update = amina.send_text("/start")
        [reply] = await amina.replies()
        amina.send_text("/help@fatoura_test_bot")
        await amina.replies()
        amina.send_text("/link 0612345678")
        await amina.replies()
        amina.send_text("0612345678")
        await amina.replies()
    start = script.events[0]
    assert (start.channel, start.chat_id, start.kind, start.language) == ("telegram", "1001", EventKind.START, "ar")
    assert start.update_id == str(update["update_id"]) and start.message_id == "1" and start.user_name == "Amina"
    assert reply.method == "sendMessage" and reply.params["text"] == "got start"
    assert "parse_mode" not in reply.params
    assert script.kinds()[1:] == [(EventKind.COMMAND, "help"), (EventKind.COMMAND, "link"), (EventKind.TEXT, "0612345678")]
    assert script.events[2].data == "0612345678"  # a command's arguments


def menu(event: Event) -> list[Reply]:
    if event.kind is EventKind.START:
        return [Text("Menu", ((Button("Factures impayées", "inv:1"), Button("Aide", "help")),))]
    return [Text(f"page {event.data}", ((Button("Menu", "menu"),),), replace=True)]


async def test_a_press_is_answered_first_then_edits_the_menu_in_place(server: FakeBotAPI) -> None:
    amina = server.user(AMINA)
    answered_before_handling: list[bool] = []

    def answer(event: Event) -> list[Reply]:
        if event.kind is EventKind.BUTTON:
            answered_before_handling.append(not server.unanswered_callbacks())
        return menu(event)

    script = Script(answer)
    async with polling(server, script):
        amina.send_text("/start")
        [shown] = await amina.replies()
        amina.press(shown.message_id, "inv:1")
        [edit] = await amina.replies()
        amina.press(shown.message_id, "menu")
        await amina.replies()
        # the same press again (a double tap): same content, Telegram says "not modified"
        amina.press(shown.message_id, "menu")
        await server.wait_for(lambda calls: len(script.events) == 4 and not server.unanswered_callbacks())
        await server.settle(0.1)
    assert answered_before_handling == [True, True, True]
    press = script.events[1]
    assert (press.kind, press.data, press.source_message_id) == (EventKind.BUTTON, "inv:1", str(shown.message_id))
    assert edit.method == "editMessageText" and edit.params["message_id"] == shown.message_id
    message = server.message(AMINA, shown.message_id)
    assert (message.text, message.callback_data) == ("page menu", ["menu"])
    methods = [c.method for c in server.sent(AMINA)]
    assert methods.index("answerCallbackQuery") < methods.index("editMessageText")
    assert len(amina.messages) == 2  # /start and the one menu, edited in place
    assert [c.description for c in server.errors()] == [
        "Bad Request: message is not modified: specified new message content and reply markup are exactly "
        "the same as a current content and reply markup of the message"]


async def test_a_long_text_arrives_in_two_messages_with_buttons_on_the_last(server: FakeBotAPI) -> None:
    amina = server.user(AMINA)
    long_text = "\n".join(f"Facture {i:04d} — 120,00 MAD — échéance 05/2024 " + "x" * 40 for i in range(60))
    assert 5000 <= len(long_text) <= 8192
    script = Script(lambda event: [Text(long_text, ((Button("Menu", "menu"),),))])
    async with polling(server, script):
        amina.send_text("/factures")
        first, second = await amina.replies(2)
    assert [c.method for c in (first, second)] == ["sendMessage", "sendMessage"]
    assert first.params["text"] + "\n" + second.params["text"] == long_text
    assert "reply_markup" not in first.params
    assert server.message(AMINA, second.message_id).callback_data == ["menu"]


async def test_documents_and_images_keep_their_filename_and_caption(server: FakeBotAPI) -> None:
    amina = server.user(AMINA)
    pdf = b"%PDF-1.7 facture" + bytes(range(200))
    statement_text = "\n".join(f"ligne {i}" for i in range(200))
    script = Script(lambda event: [Document("facture-MT-2024-05.pdf", pdf, caption="Votre facture de mai"),
                                   Image(TINY_PNG, "qr.png", caption="Référence Fatourati"),
                                   Document("releve.pdf", pdf, caption=statement_text)])
    async with polling(server, script):
        amina.send_text("pdf")
        document, image, statement, rest = await amina.replies(4)
    assert document.method == "sendDocument" and document.files["document"].filename == "facture-MT-2024-05.pdf"
    assert document.files["document"].content == pdf and document.params["caption"] == "Votre facture de mai"
    assert image.method == "sendPhoto" and image.params["caption"] == "Référence Fatourati"
    # a caption over 1024 characters: what does not fit follows as a message
    assert len(statement.params["caption"]) <= 1024 and rest.method == "sendMessage"
    assert statement.params["caption"] + "\n" + rest.params["text"] == statement_text


def ask_phone(event: Event) -> list[Reply]:
    if event.kind is EventKind.CONTACT:
        return [Text(f"Merci, ligne {event.text}. Envoyez le code de paiement.")]
    if event.kind is not EventKind.COMMAND:
        return [Text("Choisissez avec les boutons.")]
    return [Text("Envoyez le numéro de la ligne.",
                 ((Button("Partager mon numéro", request_contact=True),), (Button("Annuler", "cancel"),)))]


async def test_share_my_number_is_a_reply_keyboard_and_the_contact_comes_back(server: FakeBotAPI) -> None:
    youssef = server.user(YOUSSEF, first_name="Youssef")
    script = Script(ask_phone)
    async with polling(server, script):
        youssef.send_text("/lier")
        prompt, keyboard = await youssef.replies(2)
        assert server.reply_keyboard(YOUSSEF)["keyboard"][0][0] == {"text": "Partager mon numéro",
                                                                   "request_contact": True}
        youssef.share_contact("212612345678")
        [thanks] = await youssef.replies()
        youssef.share_contact("212600000000", user_id=4242)  # someone else's contact card
        await youssef.replies()
    # the prompt keeps its inline Cancel button; the reply keyboard follows in its own message
    assert server.message(YOUSSEF, prompt.message_id).callback_data == ["cancel"]
    assert keyboard.params["text"] == "Partager mon numéro"
    assert keyboard.params["reply_markup"]["one_time_keyboard"] is True
    assert script.events[1].kind is EventKind.CONTACT and script.events[1].text == "212612345678"
    assert thanks.params["reply_markup"] == {"remove_keyboard": True}
    assert server.reply_keyboard(YOUSSEF) is None
    assert script.kinds()[2] == (EventKind.UNSUPPORTED, "contact")


async def test_stickers_voice_notes_photos_and_locations_are_unsupported(server: FakeBotAPI) -> None:
    amina = server.user(AMINA)
    script = Script()
    async with polling(server, script):
        amina.send_sticker()
        await amina.replies()
        amina.send_voice()
        await amina.replies()
        amina.send_photo(caption="ma facture")
        await amina.replies()
        amina.send_location()
        [reply] = await amina.replies()
    assert script.kinds() == [(EventKind.UNSUPPORTED, kind) for kind in ("sticker", "voice", "photo", "location")]
    assert reply.params["text"] == "got unsupported"


async def test_chats_are_handled_concurrently(server: FakeBotAPI) -> None:
    amina, youssef = server.user(AMINA), server.user(YOUSSEF)
    youssef_answered = asyncio.Event()

    async def answer(event: Event) -> list[Reply]:
        if event.chat_id == str(AMINA):
            # a slow biller in Amina's chat must not hold Youssef's answer back
            await asyncio.wait_for(youssef_answered.wait(), 5)
        else:
            youssef_answered.set()
        return [Text(f"bonjour {event.chat_id}")]

    async with polling(server, Script(answer)):
        amina.send_text("mes factures")
        youssef.send_text("mes factures")
        await amina.replies()
        await youssef.replies()
    first = next(c for c in server.sent() if c.method == "sendMessage")
    assert first.chat_id == YOUSSEF


def test_updates_become_events_and_others_are_ignored() -> None:
    fake = FakeBotAPI(token=TOKEN)  # not started: only its update builders are used
    amina = fake.user(AMINA, language_code="fr")

    def event(update: dict[str, Any]) -> Event | None:
        return event_from_update(Update.model_validate(update))

    text = amina.make_text_update("/START@fatoura_test_bot promo-2024")
    assert (event(text).kind, event(text).data) == (EventKind.START, "promo-2024")
    assert event(amina.make_text_update("/ 12")).kind is EventKind.TEXT
    edited = amina.make_edited_text_update(1, "changed")
    assert event(edited) is None
    group = amina.make_text_update("hello")
    group["message"]["chat"] = {"id": -100123, "type": "supergroup", "title": "Support"}
    assert event(group) is None
    service = amina.make_message_update(pinned_message={"message_id": 1, "date": 0, "chat": amina.api_chat()})
    assert event(service) is None


async def test_sender_waits_out_a_flood_wait_and_survives_a_blocked_chat(server: FakeBotAPI) -> None:
    server.user(AMINA)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    bot = make_bot(server.base_url, TOKEN)
    sender = TelegramSender(bot, sleep=sleep, max_retry_after=10)
    try:
        server.fail_next("sendMessage", retry_after=3)
        [sent] = await sender.render(AMINA, [Text("Votre reçu")])
        assert waits == [3] and server.message(AMINA, sent).text == "Votre reçu"
        # a flood wait longer than we wait inside a turn: logged, the rest dropped, nothing raised
        server.fail_next("sendMessage", retry_after=120)
        assert await sender.render(AMINA, [Text("a"), Text("b")]) == []
        # deleting what is already gone is not an error
        assert await sender.render(AMINA, [DeleteMessage("999"), Text("ok")]) != []
        server.users[AMINA].blocked = True
        assert await sender.render(AMINA, [Text("hello"), Text("again")]) == []
        assert len(server.sent(AMINA, "sendMessage")) == 5  # 429, ok, 429, ok, 403; "again" never tried
        with pytest.raises(TelegramForbiddenError):
            await sender.deliver(AMINA, [Text("hello")])
    finally:
        await bot.session.close()


async def test_sender_falls_back_when_telegram_refuses_an_edit_or_a_link(server: FakeBotAPI) -> None:
    amina = server.user(AMINA)
    bot = make_bot(server.base_url, TOKEN)
    sender = TelegramSender(bot)
    try:
        amina.send_text("4111 1111 1111 1111")  # the user's own message: a bot can't edit it
        press = Event("telegram", str(AMINA), EventKind.BUTTON, data="x", source_message_id="1")
        [new] = await sender.render(AMINA, [Text("Nouveau message", replace=True), DeleteMessage("1")], press)
        assert new == 2 and server.message(AMINA, 1).deleted
        # Telegram refuses localhost links: the link goes into the text, the other buttons stay
        pay = Text("Payer 120,00 MAD", ((Button("Payer par carte", url="http://localhost:8000/pay/abc"),),
                                        (Button("Menu", "menu"),)))
        [sent] = await sender.render(AMINA, [pay])
        message = server.message(AMINA, sent)
        assert message.text == "Payer 120,00 MAD\n\nPayer par carte: http://localhost:8000/pay/abc"
        assert message.callback_data == ["menu"]
        # only the first `replace` of a turn edits the pressed message; the next one is new
        on_menu = Event("telegram", str(AMINA), EventKind.BUTTON, data="menu", source_message_id=str(sent))
        edited, added = await sender.render(AMINA, [Text("Facture 1", replace=True), Text("Facture 2", replace=True)],
                                            on_menu)
        assert edited == sent and added == sent + 1
        assert [m.text for m in amina.messages[-2:]] == ["Facture 1", "Facture 2"]
    finally:
        await bot.session.close()


# ---------------------------------------------------------------- the webhook
@asynccontextmanager
async def webhook_app(server: FakeBotAPI, script: Script, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_telegram(app, settings_for(server, **overrides), script)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client
    finally:
        await close_telegram(app)


async def test_webhook_checks_the_secret_and_refuses_garbage(server: FakeBotAPI) -> None:
    amina = server.user(AMINA)
    script = Script()
    update = amina.make_text_update("bonjour")
    async with webhook_app(server, script) as client:
        def post(body: Any, secret: str | None = SECRET) -> Any:
            headers = {"Content-Type": "application/json"} | ({SECRET_HEADER: secret} if secret else {})
            content = body if isinstance(body, (bytes, str)) else json.dumps(body)
            return client.post("/webhooks/telegram", content=content, headers=headers)

        assert (await post(update, secret="wrong")).status_code == 403
        assert (await post(update, secret=None)).status_code == 403
        assert (await post(b"{not json")).status_code == 400
        assert (await post(b"\xff\xfe")).status_code == 400
        assert (await post([update])).status_code == 400
        assert (await post({"message": {"text": "no update_id"}})).status_code == 400
        assert (await post({"update_id": "x"})).status_code == 400
        assert script.events == [] and server.sent() == []
        response = await post(update)
        assert response.status_code == 200
        [reply] = await amina.replies()
        assert reply.params["text"] == "got text"
        # Telegram re-sends an update it got no 2xx for: it reaches the conversation again, whose
        # job it is to give no second answer (it keeps the update ids it handled)
        assert (await post(update)).status_code == 200
        await server.wait_for(lambda calls: len(script.events) == 2)
    assert [e.update_id for e in script.events] == [str(update["update_id"])] * 2


async def test_webhook_answers_before_the_conversation_is_done(server: FakeBotAPI) -> None:
    amina = server.user(AMINA)
    release = asyncio.Event()

    async def slow(event: Event) -> list[Reply]:
        await release.wait()
        return [Text("enfin")]

    async with webhook_app(server, Script(slow)) as client:
        response = await asyncio.wait_for(client.post(
            "/webhooks/telegram", json=amina.make_text_update("factures"), headers={SECRET_HEADER: SECRET}), 2)
        assert response.status_code == 200 and server.sent() == []
        release.set()
        [reply] = await amina.replies()
    assert reply.params["text"] == "enfin"


async def test_webhook_is_404_without_telegram_settings(server: FakeBotAPI) -> None:
    async with webhook_app(server, Script(), telegram_webhook_secret=None) as client:
        response = await client.post("/webhooks/telegram", json={"update_id": 1}, headers={SECRET_HEADER: ""})
    assert response.status_code == 404


async def test_set_webhook_points_telegram_at_the_public_url(server: FakeBotAPI, capsys) -> None:
    settings = settings_for(server, public_base_url="http://127.0.0.1:8000/")
    assert await set_webhook(settings, drop_pending=True, session=session_for(server)) == 0
    assert server.webhook == {"url": "http://127.0.0.1:8000/webhooks/telegram", "secret_token": SECRET,
                              "max_connections": 40}
    assert server.allowed_updates == ["message", "callback_query"]
    assert await set_webhook(settings_for(server, telegram_webhook_secret=None)) == 2
    assert "TELEGRAM_WEBHOOK_SECRET" in capsys.readouterr().err
    assert await set_webhook(settings_for(server, public_base_url="http://fatoura.example.ma")) == 2
    assert "https" in capsys.readouterr().err
    # polling deletes the webhook (getUpdates can't run beside one)
    channel_script = Script()
    amina = server.user(AMINA)
    async with polling(server, channel_script):
        assert server.webhook is None
        amina.send_text("salam")
        await amina.replies()
