"""The fake Bot API server against the real aiogram client (over HTTP on 127.0.0.1)."""
from __future__ import annotations

import asyncio

import pytest
from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError, TelegramRetryAfter
from aiogram.types import (
    BotCommand,
    BufferedInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    LinkPreviewOptions,
    ReplyKeyboardMarkup,
)
from aiohttp import web

from tests.fakes.bot_api import TINY_PNG, FakeBotAPI, visible_text
from tests.fakes.echo_bot import ECHO_TOKEN, make_bot, running_echo_bot

CHAT = 1001


def keyboard(*data: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[
        [InlineKeyboardButton(text=f"Button {d}", callback_data=d)] for d in data])


@pytest.fixture
async def server():
    async with FakeBotAPI(token=ECHO_TOKEN) as fake:
        yield fake


@pytest.fixture
async def bot(server: FakeBotAPI):
    bot = make_bot(server.base_url)
    yield bot
    await bot.session.close()


async def test_start_is_echoed_back(server: FakeBotAPI) -> None:
    amina = server.user(CHAT, first_name="Amina", language_code="ar")
    async with running_echo_bot(server.base_url):
        amina.send_text("/start")
        [reply] = await amina.replies()
        amina.send_text("مرحبا")
        [second] = await amina.replies()
    assert reply.method == "sendMessage" and reply.params["text"] == "/start"
    assert second.params["text"] == "مرحبا"
    texts = [(m.from_bot, m.text) for m in amina.messages]
    assert texts == [(False, "/start"), (True, "/start"), (False, "مرحبا"), (True, "مرحبا")]
    assert [m.message_id for m in amina.messages] == [1, 2, 3, 4]
    assert not server.pending and not server.errors()


async def test_callback_press_is_answered(server: FakeBotAPI, bot: Bot) -> None:
    user = server.user(CHAT)
    sent = await bot.send_message(CHAT, "Choose", reply_markup=keyboard("pay:1", "cancel"))
    msg = server.message(CHAT, sent.message_id)
    assert msg.button_texts == ["Button pay:1", "Button cancel"]
    async with running_echo_bot(server.base_url):
        update = user.press(msg, "pay:1")
        await server.wait_for(lambda calls: not server.unanswered_callbacks())
    query_id = update["callback_query"]["id"]
    assert server.callbacks[query_id]["answer"]["text"] == "pressed pay:1"
    [answer] = server.sent(CHAT, "answerCallbackQuery")
    assert answer.ok and answer.params["callback_query_id"] == query_id
    with pytest.raises(AssertionError):
        user.press(msg, "not-a-button")


async def test_send_document_is_recorded_and_downloadable(server: FakeBotAPI, bot: Bot) -> None:
    server.user(CHAT)
    pdf = b"%PDF-1.7 fake receipt" + bytes(range(256))
    await bot.send_document(CHAT, BufferedInputFile(pdf, filename="recu-0001.pdf"),
                            caption="Votre reçu")
    [call] = server.sent(CHAT, "sendDocument")
    assert call.ok and call.files["document"].filename == "recu-0001.pdf"
    assert call.files["document"].content == pdf and call.params["caption"] == "Votre reçu"
    [msg] = server.messages(CHAT)
    assert msg.caption == "Votre reçu" and msg.content["document"]["file_name"] == "recu-0001.pdf"
    file = await bot.get_file(msg.content["document"]["file_id"])
    downloaded = await bot.download_file(file.file_path)
    assert downloaded.read() == pdf

    await bot.send_photo(CHAT, BufferedInputFile(TINY_PNG, filename="qr.png"))
    with pytest.raises(TelegramBadRequest, match="IMAGE_PROCESS_FAILED"):
        await bot.send_photo(CHAT, BufferedInputFile(b"not an image", filename="qr.png"))
    with pytest.raises(TelegramBadRequest, match="caption is too long"):
        await bot.send_document(CHAT, BufferedInputFile(pdf, "a.pdf"), caption="x" * 1025)


async def test_limits_are_enforced_like_telegram(server: FakeBotAPI, bot: Bot) -> None:
    server.user(CHAT)
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(CHAT, "Pay", reply_markup=keyboard("x" * 65))
    # 64 bytes is fine, but 33 two-byte Arabic letters are 66 bytes
    await bot.send_message(CHAT, "Pay", reply_markup=keyboard("x" * 64))
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(CHAT, "Pay", reply_markup=keyboard("ب" * 33))
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(CHAT, "a" * 4097)
    await bot.send_message(CHAT, "<b>" + "a" * 4096 + "</b>", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await bot.send_message(CHAT, "Total < 100 MAD", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="reserved"):
        await bot.send_message(CHAT, "Total: 12.50 MAD", parse_mode="MarkdownV2")
    with pytest.raises(TelegramBadRequest, match="Wrong HTTP URL"):
        await bot.send_message(CHAT, "Pay", reply_markup=InlineKeyboardMarkup(inline_keyboard=[
            [InlineKeyboardButton(text="Pay", url="http://localhost:8000/pay")]]))
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(999, "hello")
    server.users[CHAT].blocked = True
    with pytest.raises(TelegramForbiddenError):
        await bot.send_message(CHAT, "hello")
    assert len(server.errors()) == 8


async def test_edit_message_and_not_modified(server: FakeBotAPI, bot: Bot) -> None:
    server.user(CHAT)
    sent = await bot.send_message(CHAT, "Facture 1", reply_markup=keyboard("pay"))
    await bot.edit_message_text("Facture 1 payée", chat_id=CHAT, message_id=sent.message_id,
                                reply_markup=keyboard("receipt"))
    msg = server.message(CHAT, sent.message_id)
    assert (msg.text, msg.callback_data, bool(msg.edit_date)) == ("Facture 1 payée", ["receipt"], True)
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text("Facture 1 payée", chat_id=CHAT, message_id=sent.message_id,
                                    reply_markup=keyboard("receipt"))
    # like Telegram, editing the text without reply_markup drops the inline keyboard
    await bot.edit_message_text("Done", chat_id=CHAT, message_id=sent.message_id)
    assert server.message(CHAT, sent.message_id).buttons == []
    await bot.edit_message_reply_markup(chat_id=CHAT, message_id=sent.message_id,
                                        reply_markup=keyboard("again"))
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("x", chat_id=CHAT, message_id=999)
    assert await bot.delete_message(CHAT, sent.message_id)
    assert server.messages(CHAT) == []
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(CHAT, sent.message_id)


async def test_reply_keyboard_contact_and_other_content(server: FakeBotAPI, bot: Bot) -> None:
    user = server.user(CHAT, first_name="Youssef")
    markup = ReplyKeyboardMarkup(keyboard=[[KeyboardButton(text="Partager", request_contact=True)]],
                                 resize_keyboard=True, one_time_keyboard=True)
    await bot.send_message(CHAT, "Votre numéro ?", reply_markup=markup,
                           link_preview_options=LinkPreviewOptions(is_disabled=True))
    assert server.reply_keyboard(CHAT)["keyboard"][0][0]["request_contact"] is True
    [call] = server.sent(CHAT)
    assert call.params["link_preview_options"] == {"is_disabled": True}
    user.share_contact("+212623363444")
    user.send_sticker()
    user.send_photo(caption="ma facture")
    user.send_voice()
    updates = await bot.get_updates(timeout=0)
    assert updates[0].message.contact.phone_number == "+212623363444"
    assert updates[0].message.contact.user_id == CHAT
    assert updates[1].message.sticker and updates[3].message.voice.duration == 3
    photo = updates[2].message.photo[-1]
    assert (await bot.download(photo.file_id)).read() == TINY_PNG
    # confirmed updates are not delivered again
    assert await bot.get_updates(offset=updates[-1].update_id + 1, timeout=0) == []


async def test_rate_limit_and_injected_failures(server: FakeBotAPI, bot: Bot) -> None:
    server.user(CHAT)
    server.fail_next("sendMessage", retry_after=7)
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(CHAT, "one")
    assert caught.value.retry_after == 7
    server.rate_limit(per_chat=2, overall=None, window=1.0)
    await bot.send_message(CHAT, "a")
    await bot.send_message(CHAT, "b")
    with pytest.raises(TelegramRetryAfter):
        await bot.send_message(CHAT, "c")


async def test_webhook_delivery_with_secret(server: FakeBotAPI, bot: Bot) -> None:
    received: list[tuple[str | None, dict]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((request.headers.get("X-Telegram-Bot-Api-Secret-Token"),
                         await request.json()))
        # answer with a method, as aiogram's webhook handler may do
        return web.json_response({"method": "sendMessage", "chat_id": CHAT, "text": "pong"})

    app = web.Application()
    app.router.add_post("/tg", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/tg"
    try:
        user = server.user(CHAT)
        with pytest.raises(TelegramBadRequest, match="HTTPS"):
            await bot.set_webhook("http://example.com/tg")
        await bot.set_webhook(url, secret_token="s3cret")
        assert (await bot.get_webhook_info()).url == url
        with pytest.raises(Exception, match="webhook is active"):
            await bot.get_updates(timeout=0)
        user.send_text("ping")
        [reply] = await user.replies()
        assert reply.params["text"] == "pong"
        assert received[0][0] == "s3cret" and received[0][1]["message"]["text"] == "ping"
        update = user.make_text_update("direct")
        status, _ = await server.post_update(url, update, secret_token="s3cret")
        assert status == 200 and received[1][1]["message"]["text"] == "direct"
        await bot.delete_webhook()
        assert not server.webhook and not server.pending
    finally:
        await runner.cleanup()


def test_visible_text() -> None:
    assert visible_text("<b>Total</b> &lt;1&gt; &amp; co", "HTML") == "Total <1> & co"
    assert visible_text(r"*Total:* 12\.50 MAD", "MarkdownV2") == "Total: 12.50 MAD"
    assert visible_text("*bold* _it_", "Markdown") == "bold it"


async def test_shutdown_is_prompt(server: FakeBotAPI) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with running_echo_bot(server.base_url):
        await server.wait_for(lambda calls: server.poll_count > 0)
    assert loop.time() - start < 2


async def test_json_and_form_bodies_tokens_and_unknown_methods(server: FakeBotAPI, bot: Bot) -> None:
    from aiohttp import ClientSession

    server.user(CHAT)
    api = f"{server.base_url}/bot{ECHO_TOKEN}"
    async with ClientSession() as http:
        async with http.post(f"{api}/sendMessage", json={"chat_id": CHAT, "text": "json"}) as r:
            assert r.status == 200 and (await r.json())["result"]["text"] == "json"
        async with http.post(f"{api}/SENDMESSAGE", data={"chat_id": str(CHAT), "text": "form"}) as r:
            assert r.status == 200 and (await r.json())["result"]["message_id"] == 2
        async with http.post(f"{api}/noSuchMethod", data={}) as r:
            assert r.status == 404
        async with http.post(f"{server.base_url}/bot1:wrong/getMe") as r:
            assert r.status == 401 and (await r.json())["description"] == "Unauthorized"
    await bot.set_my_commands([BotCommand(command="start", description="Démarrer")],
                              language_code="fr")
    assert (await bot.get_my_commands(language_code="fr"))[0].command == "start"
    assert await bot.set_my_description("Factures")
    assert [c.method for c in server.sent()][-3:] == ["setMyCommands", "getMyCommands",
                                                      "setMyDescription"]
