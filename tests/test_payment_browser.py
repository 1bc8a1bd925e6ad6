"""Paying by card in a real browser: the chat's /pay link, the sandbox CMI page, a test card,
back on our okUrl page — in French and in Arabic."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from core.config import Settings
from core.models import ChatUser
from core.services import checkout as checkouts
from core.services.linking import save_link
from tests.browser import ARTIFACTS, launch_chromium, serve
from tests.test_payment_e2e import free_port
from webhooks.app import create_app

pytestmark = pytest.mark.browser


async def _card_link(app, db, language: str) -> str:  # noqa: ANN001
    """Amina's card checkout for her two unpaid Maroc Telecom invoices, as the chat creates it."""
    from core.billers.catalog import IAM, make_query

    state = app.state.fatoura
    account = await state.billers.get("iam").find_account(make_query(IAM, "mobile", "0623363444", "528605"))
    async with db.transaction() as session:
        user = ChatUser(channel="webchat", chat_id=f"browser-{language}", locale=language)
        session.add(user)
    link = (await save_link(db, user.id, account)).account
    selection = await checkouts.selectable(db, state.billers, user.id, link.id)
    _, instruction = await checkouts.create_checkout(db, user, list(selection.selected_ids), "card",
                                                     app.state.gateways, state.settings, link_id=link.id)
    return instruction.url


@pytest.mark.parametrize("language, thanks", [("fr", "Paiement reçu"), ("ar", "تم استلام الأداء")])
async def test_pay_link_test_card_ok_page(seeded_db, language, thanks):
    port = free_port()
    app = create_app(Settings(_env_file=None, sandbox=True, public_base_url=f"http://127.0.0.1:{port}"), db=seeded_db)
    async with serve(app, port=port):
        url = await _card_link(app, seeded_db, language)
        async with launch_chromium() as browser:
            page = await browser.new_page(viewport={"width": 390, "height": 844})
            await page.goto(url)
            await page.wait_for_selector("#pan", timeout=15_000)  # through our page to the CMI-like page
            await page.screenshot(path=str(ARTIFACTS / f"pay-cmi-{language}.png"), full_page=True)
            await page.click("button[data-pan='4000000000000002']")
            await page.fill("input[name=exp]", "12/30")
            await page.fill("input[name=cvv]", "123")
            await page.click("#pay")
            await page.wait_for_url("**/ok", timeout=15_000)
            await page.get_by_text(thanks).first.wait_for(timeout=10_000)
            assert await page.evaluate("document.documentElement.dir") == ("rtl" if language == "ar" else "ltr")
            await page.screenshot(path=str(ARTIFACTS / f"pay-ok-{language}.png"), full_page=True)
    async with seeded_db.session() as session:
        user = await session.scalar(select(ChatUser).where(ChatUser.chat_id == f"browser-{language}"))
    listed = await checkouts.list_checkouts(seeded_db, user.id)
    assert listed[0].state == "paid"
