"""Reports in the chat (issue 8): the spending chart of seed 000, exports, receipts, archives."""
from __future__ import annotations

import io
import zipfile
from datetime import date, datetime, timezone
from decimal import Decimal

import httpx
import pytest
from openpyxl import load_workbook
from pypdf import PdfReader

from bot.conversation.engine import Conversation
from bot.conversation.replies import Image
from core.billers.registry import BillerRegistry
from core.config import Settings
from core.models import ChatUser, Checkout, Payment
from core.reports.receipts import receipt_of, verification_code
from core.reports.spending import monthly
from core.state import MemoryState
from tests.browser import ARTIFACTS
from tests.chat import Chat
from webhooks.app import create_app


@pytest.fixture
def conversation(seeded_db):
    settings = Settings(_env_file=None, sandbox=True)
    return Conversation(settings, seeded_db, MemoryState(), BillerRegistry.from_settings(settings, seeded_db),
                        clock=lambda: date(2017, 3, 1))


async def linked(conversation, language: str) -> Chat:
    chat = Chat(conversation, chat_id=f"rep-{language}", language=language)
    await chat.start()
    for step in ("L|iam|mobile",):
        await chat.press_data(step)
    await chat.say("0623363444")
    await chat.say("528605")
    return chat


@pytest.mark.parametrize("language", ["fr", "ar"])
async def test_spending_chart_of_the_seed_000_account(conversation, language):
    chat = await linked(conversation, language)
    await chat.press_data("Rc|0|6")
    (image,) = [r for r in chat.replies if isinstance(r, Image)]
    assert image.content.startswith(b"\x89PNG")
    (ARTIFACTS / f"spending-{language}.png").write_bytes(image.content)
    assert ("1\u202f299,84" if language == "fr" else "1.299,84") in chat.text  # the total HT of the 6 bars
    # the values the chart was drawn from: the six months of the portal's chart (seed 000)
    from core.services import invoices as service
    from core.services.linking import list_links

    user_links = await list_links(conversation.db, (await _user(conversation, chat)).id)
    page = await service.list_invoices(conversation.billers, user_links, service.Filters(status=None), page_size=100)
    spending = monthly([row.invoice for row in page.items], 6)
    assert spending.periods == ("08/2016", "09/2016", "10/2016", "11/2016", "12/2016", "01/2017")
    assert spending.amounts == tuple(Decimal(x) for x in ("160.00", "250.00", "190.00", "230.00", "220.00", "249.84"))


async def _user(conversation, chat):  # noqa: ANN001, ANN202
    from sqlalchemy import select

    async with conversation.db.session() as session:
        return await session.scalar(select(ChatUser).where(ChatUser.chat_id == chat.chat_id))


async def test_excel_export_has_typed_cells_and_pdf_export_every_number(conversation):
    chat = await linked(conversation, "en")
    await chat.press_data("Rx|0|xlsx|2017")
    assert "Preparing the export of 2 invoices" in chat.text
    (xlsx,) = chat.documents
    sheet = load_workbook(io.BytesIO(xlsx.content)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][0] == "Invoice No." and len(rows) == 3
    numbers = [r[0] for r in rows[1:]]
    assert numbers == ["0000528605012017", "0000528605022017"]
    assert isinstance(rows[2][9], float) and rows[2][9] == pytest.approx(299.81)  # TTC is a number
    assert isinstance(rows[2][5], datetime) and rows[2][5].date() == date(2017, 2, 5)  # a date cell
    await chat.press_data("Rx|0|pdf|2016")
    (pdf,) = chat.documents
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    for number in ("0000528605092016", "0000528605102016", "0000528605112016", "0000528605122016"):
        assert number in text


async def test_preparing_is_said_before_the_export_is_ready(conversation):
    chat = await linked(conversation, "fr")
    chat.early = True
    await chat.press_data("Rx|0|pdf|2016")
    assert [type(r).__name__ for r in chat.sent_early] == ["Text"]
    assert "Préparation de l’export de 4 factures" in chat.sent_early[0].text
    assert [type(r).__name__ for r in chat.replies] == ["Document"]  # the file follows on its own


async def test_a_years_pdfs_as_one_zip(conversation):
    chat = await linked(conversation, "fr")
    await chat.press_data("Ra|0|2016")
    (archive,) = chat.documents
    names = zipfile.ZipFile(io.BytesIO(archive.content)).namelist()
    assert len(names) == 4 and all(n.endswith(".pdf") for n in names)
    assert "2 ans" in (archive.caption or "")


async def test_an_arabic_archive_names_its_folder_without_invisible_marks(conversation):
    chat = await linked(conversation, "ar")
    await chat.press_data("Ra|0|2016")
    (archive,) = chat.documents
    folders = {name.split("/")[0] for name in zipfile.ZipFile(io.BytesIO(archive.content)).namelist()}
    assert folders == {"الهاتف المحمول 06 23 36 34 44"}  # the text shows the number isolated; a file name can't


async def test_receipts_are_verified_and_forged_codes_refused(seeded_db):
    settings = Settings(_env_file=None, sandbox=True, secret_key="k" * 32)
    async with seeded_db.transaction() as session:
        checkout = Checkout(token="t" * 32, biller="portnet", issuer="PORTNET", channel="card", gateway="cmi",
                            order_id="FT-1", amount_ht=Decimal("3000.00"), amount_tva=Decimal("600.00"),
                            amount_ttc=Decimal("3600.00"), status="paid")
        session.add(checkout)
        await session.flush()
        session.add(Payment(checkout_id=checkout.id, gateway="cmi", transaction_id="TX-42", amount=Decimal("3600.00"),
                            status="paid", receipt_code="FT-171222-ABCD1234", created_at=datetime.now(timezone.utc)))
    code = verification_code(settings, "FT-171222-ABCD1234")
    assert receipt_of(settings, code) == "FT-171222-ABCD1234"
    app = create_app(settings, db=seeded_db)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            genuine = await client.get(f"/receipts/{code}?lang=en")
            forged = await client.get(f"/receipts/{code[:-1]}A?lang=en")
            unknown = await client.get(f"/receipts/{verification_code(settings, 'FT-000000-00000000')}")
            garbage = await client.get("/receipts/%00%ff'--")
    assert genuine.status_code == 200 and "TX-42" in genuine.text and "genuine" in genuine.text
    assert forged.status_code == unknown.status_code == garbage.status_code == 404
    assert forged.text == (await _same(app, settings, unknown.request.url.path))  # one answer for both


async def _same(app, settings, path: str) -> str:  # noqa: ANN001
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        async with app.router.lifespan_context(app):
            return (await client.get(path + "?lang=en")).text
