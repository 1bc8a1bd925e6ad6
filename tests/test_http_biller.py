"""HttpBiller against the real app's sandbox billers under uvicorn, and against billers that misbehave.

The sandbox side runs on SQLite and PostgreSQL (seeded_db is parametrized); the misbehaving
billers are tiny Starlette apps and need no database.
"""
from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import socket
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from decimal import Decimal

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.billers.base import AccountQuery, BillerConnector, BillerInfo, InvoiceFilter, PaidNotice
from core.billers.catalog import DIAC, IAM, MARSAMAROC, PORTNET, SANDBOX_BILLERS, make_query
from core.billers.http import HttpBiller, info_to_wire
from core.billers.registry import BillerRegistry
from core.config import Settings
from core.errors import (
    BillerUnavailable,
    InvalidAmount,
    InvoiceNotFound,
    UnknownAccount,
    UnknownBiller,
    UnknownService,
    UnknownTerminal,
    WrongEmail,
    WrongPaymentCode,
)
from webhooks.app import create_app
from webhooks.sandbox_billers import sandbox_token

SECRET_KEY = "http-biller-test-secret"
HAS_PDF_RENDERER = importlib.util.find_spec("core.documents.invoice_pdf") is not None


@asynccontextmanager
async def serve(app):
    """`app` under a real uvicorn server on a free loopback port, in this event loop."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # the socket is handed over bound, so no other process can take the port
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="auto"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()  # startup failed: raise its error here
                raise RuntimeError("uvicorn stopped before starting")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture
async def sandbox(seeded_db):
    settings = Settings(sandbox=True, secret_key=SECRET_KEY, http_billers={})
    async with serve(create_app(settings, db=seeded_db)) as base:
        yield base, sandbox_token(settings)


@pytest.fixture
async def connect(sandbox):
    """connect(code) -> an HttpBiller on the sandbox biller `code`, closed after the test."""
    base, token = sandbox
    made: list[HttpBiller] = []

    def make(code: str, *, token: str | None = token, path_code: str | None = None) -> HttpBiller:
        info = BillerInfo(code=code, name=code, services=())
        biller = HttpBiller(info, f"{base}/sandbox/billers/{path_code or code}", token, timeout=5, backoff=0)
        made.append(biller)
        return biller

    yield make
    for biller in made:
        await biller.aclose()


async def test_info_is_the_catalog_over_the_wire(connect):
    for info in SANDBOX_BILLERS:
        biller = connect(info.code)
        assert isinstance(biller, BillerConnector)
        assert await biller.load_info() == info


async def test_seed_000_maroc_telecom_sample(connect):
    iam = connect("iam")
    account = await iam.find_account(make_query(IAM, "mobile", "06 23 36 34 44", "528605"))
    assert account.customer_number == "156677143760" and account.biller == "iam"
    page = await iam.list_invoices(account.account_ref, InvoiceFilter(status=None))
    assert page.total == 6
    latest = page.items[0]
    assert latest.number == "0000528605022017"
    assert latest.billing_period == "01/2017"
    assert latest.call_number == "212623363444" and latest.customer_number == "156677143760"
    assert latest.amount_ht == Decimal("249.84") and isinstance(latest.amount_ht, Decimal)
    assert latest.amount_ttc == Decimal("299.81") and latest.amount_tva == Decimal("49.97")


async def test_maroc_telecom_customer_number_instead_of_phone(connect):
    account = await connect("iam").find_account(make_query(IAM, "mobile", "156677143760", "528605"))
    assert account.identifier == "212623363444"


async def test_portnet_a7k2_invoice_field_for_field(connect):
    portnet = connect("portnet")
    account = await portnet.find_account(make_query(PORTNET, "portnet", "a7k2"))
    assert account.holder_name == "SATAA IMPORT EXPORT SARL AU" and account.customs_code == "290240"
    invoice = await portnet.get_invoice(account.account_ref, "00069321")
    assert (invoice.amount_ht, invoice.amount_ttc) == (Decimal("3000.00"), Decimal("3600.00"))
    assert invoice.payment_means == ("amanpay", "cheque", "virement")
    assert invoice.issuer == "PORTNET" and invoice.invoice_type == "Principale"
    assert len(invoice.messages) == 4 and invoice.prestations[0]["reference"] == "Abonnement annuel IMP"
    by_issuer = await portnet.list_invoices(account.account_ref, InvoiceFilter(issuer="anp"))
    assert [i.number for i in by_issuer.items] == ["00071210"]
    with pytest.raises(InvoiceNotFound):
        await portnet.get_invoice(account.account_ref, "99999999")


async def test_marsa_maroc_23_unpaid_across_3_pages(connect):
    marsa = connect("marsamaroc")
    account = await marsa.find_account(make_query(MARSAMAROC, "marsamaroc", "000236", terminal="casablanca"))
    assert account.holder_name == "TMTA TMTA" and account.terminal == "Casablanca"
    pages = [await marsa.list_invoices(account.account_ref, InvoiceFilter(page=n)) for n in (1, 2, 3)]
    assert [len(p.items) for p in pages] == [10, 10, 3]
    assert pages[0].total == 23 and pages[0].pages == 3
    items = [i for p in pages for i in p.items]
    assert len({i.number for i in items}) == 23
    assert pages[0].totals_ttc == sum((i.amount_ttc for i in items), Decimal("0.00"))


async def test_diac_needs_the_registered_email(connect):
    diac = connect("diac")
    with pytest.raises(WrongEmail):
        await diac.find_account(make_query(DIAC, "efacture", "40012345", "someone@else.ma"))
    account = await diac.find_account(make_query(DIAC, "efacture", "40012345", "Contact@Atlas-Logistique.ma"))
    page = await diac.list_invoices(account.account_ref, InvoiceFilter(status=None, page_size=50))
    assert page.total == 24


async def test_typed_refusals_come_back_typed(connect):
    iam, marsa = connect("iam"), connect("marsamaroc")
    with pytest.raises(WrongPaymentCode):
        await iam.find_account(make_query(IAM, "mobile", "0623363444", "111111"))
    with pytest.raises(UnknownAccount):
        await iam.find_account(make_query(IAM, "mobile", "0661000000", "528605"))
    with pytest.raises(UnknownService):
        await iam.find_account(AccountQuery("tv", "212623363444", "528605"))
    with pytest.raises(UnknownTerminal):
        await marsa.find_account(AccountQuery("marsamaroc", "000236", terminal="Atlantis"))
    with pytest.raises(UnknownAccount):
        await iam.list_invoices("iam-mobile-000000000000", InvoiceFilter())
    with pytest.raises(UnknownAccount):  # refused locally: never put on the wire
        await iam.list_invoices("../../etc", InvoiceFilter())


async def test_pdf_over_the_wire(connect):
    iam = connect("iam")
    ref = "iam-mobile-156677143760"
    with pytest.raises(InvoiceNotFound):
        await iam.fetch_pdf(ref, "0000000000000000")
    if not HAS_PDF_RENDERER:
        pytest.skip("core/documents/invoice_pdf.py (the PDF renderer) is not written yet")
    pdf = await iam.fetch_pdf(ref, "0000528605022017", language="fr")
    assert pdf.startswith(b"%PDF")


async def test_paid_notice_is_idempotent(connect):
    portnet = connect("portnet")
    ref = "portnet-K9AS"
    now = datetime(2026, 11, 24, 10, 0, tzinfo=timezone.utc)
    with pytest.raises(InvalidAmount):
        await portnet.notify_paid(ref, PaidNotice(("00028653",), "T-1", Decimal("3599.99"), now, "cmi"))
    assert (await portnet.get_invoice(ref, "00028653")).status == "unpaid"
    notice = PaidNotice(("00028653",), "T-1", Decimal("3600.00"), now, "cmi")
    await portnet.notify_paid(ref, notice)
    await portnet.notify_paid(ref, notice)  # replay: no second effect
    invoice = await portnet.get_invoice(ref, "00028653")
    assert invoice.status == "paid" and invoice.transaction_id == "T-1"
    assert invoice.paid_at == now and len(invoice.messages) == 1
    with pytest.raises(InvoiceNotFound):
        await portnet.notify_paid(ref, PaidNotice(("99999999",), "T-2", Decimal("1.00"), now, "cmi"))


async def test_unknown_biller_path_is_404(sandbox, connect):
    base, token = sandbox
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{base}/sandbox/billers/lydec/info", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "unknown_biller"
    with pytest.raises(UnknownBiller):
        await connect("lydec").load_info()


async def test_missing_or_wrong_token_is_401(sandbox, connect, caplog):
    base, token = sandbox
    async with httpx.AsyncClient() as client:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {token}"}):
            answer = await client.get(f"{base}/sandbox/billers/iam/info", headers=headers)
            assert answer.status_code == 401, headers
            assert answer.json()["error"]["code"] == "unauthorized"
            assert answer.headers["www-authenticate"] == "Bearer"
    wrong = connect("iam", token="wrong-token-value")
    with caplog.at_level(logging.DEBUG), pytest.raises(BillerUnavailable):
        await wrong.find_account(make_query(IAM, "mobile", "0623363444", "528605"))
    assert "wrong-token-value" not in caplog.text and "528605" not in caplog.text
    assert "wrong-token-value" not in repr(wrong) and token not in repr(connect("iam"))


@pytest.mark.parametrize("method,path,body", [
    ("POST", "iam/accounts/lookup", b"not json"),
    ("POST", "iam/accounts/lookup", b"[1, 2]"),
    ("POST", "iam/accounts/lookup", b'{"service": 1, "identifier": "x"}'),
    ("POST", "iam/accounts/lookup", b'{"service": "mobile", "identifier": "0623363444", "secret": "52\\u0000"}'),
    ("POST", "iam/accounts/lookup", b'{"service": "mobile"}'),
    ("POST", "iam/accounts/lookup", b"{" * 100_000),
    ("POST", "portnet/accounts/portnet-K9AS/paid", b'{"invoice_numbers": ["00028653"], "transaction_id": "T",'
                                                   b' "amount": 3600.0, "paid_at": "2026-11-24T10:00:00+00:00",'
                                                   b' "channel": "cmi"}'),
    ("POST", "portnet/accounts/portnet-K9AS/paid", b'{"invoice_numbers": ["00028653"], "transaction_id": "T\\u0000",'
                                                   b' "amount": "3600.00", "paid_at": "2026-11-24T10:00:00",'
                                                   b' "channel": "cmi"}'),
    ("POST", "portnet/accounts/portnet-K9AS/paid", b'{"invoice_numbers": [], "amount": NaN}'),
    ("GET", "portnet/accounts/portnet-K9AS/invoices?page=abc", None),
    ("GET", "portnet/accounts/portnet-K9AS/invoices?page=0", None),
    ("GET", "portnet/accounts/portnet-K9AS/invoices?page=%C2%B2", None),
    ("GET", "portnet/accounts/portnet-K9AS/invoices?billing_period=13/2017", None),
    ("GET", "portnet/accounts/portnet-K9AS/invoices?page_size=1000", None),
    ("GET", "portnet/accounts/portnet-K9AS/invoices?date_from=2017-13-45", None),
    ("GET", "portnet/accounts/portnet-K9AS/invoices?date_from=2018-01-01&date_to=2017-01-01", None),
    ("GET", "portnet/accounts/portnet-K9AS/invoices?status=weird", None),
    ("GET", "portnet/accounts/portnet-K9AS/invoices?issuer=%00", None),
    ("GET", "portnet/accounts/portnet-K9AS/invoices?number=%00%ff", None),
    ("GET", "portnet/accounts/portnet%00K9AS/invoices", None),
    ("GET", "portnet/accounts/portnet-K9AS/invoices/%00/pdf", None),
    ("GET", "portnet/accounts/portnet-K9AS/invoices/00028653/pdf?lang=xx", None),
    ("GET", "portnet/nothing/here", None),
])
async def test_garbage_input_is_4xx_json(sandbox, method, path, body):
    base, token = sandbox
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with httpx.AsyncClient() as client:
        answer = await client.request(method, f"{base}/sandbox/billers/{path}", content=body, headers=headers)
    assert 400 <= answer.status_code < 500, answer.text
    assert isinstance(answer.json(), dict)


async def test_registry_builds_http_billers_from_settings(sandbox, db):
    base, token = sandbox
    conf = {"name": "PortNet (HTTP)", "base_url": f"{base}/sandbox/billers/portnet", "token": token}
    settings = Settings(sandbox=False, http_billers={"portnet_http": conf}, http_biller_timeout=3)
    registry = BillerRegistry.from_settings(settings, db)
    biller = registry.get("portnet_http")
    assert isinstance(biller, HttpBiller) and biller.info.services == ()
    info = await biller.load_info()
    assert (info.code, info.name, info.services) == ("portnet_http", "PortNet (HTTP)", PORTNET.services)
    account = await biller.find_account(make_query(info, "portnet", "A7K2"))
    assert account.biller == "portnet_http"
    await biller.aclose()
    # `info` in the config skips /info entirely.
    preset = HttpBiller.from_config("x", {"base_url": "http://127.0.0.1:9", "info": json.dumps(info_to_wire(IAM))})
    assert preset.info.services == IAM.services and preset.info.name == "Maroc Telecom"
    with pytest.raises(ValueError):
        HttpBiller.from_config("x", {"base_url": "ftp://nowhere"})


# --- billers that misbehave: no database involved ---

def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed on exit: connecting is refused


async def test_biller_down_is_unavailable():
    down = HttpBiller(BillerInfo("down", "Down", ()), f"http://127.0.0.1:{_closed_port()}", "t", backoff=0)
    with pytest.raises(BillerUnavailable):
        await down.list_invoices("ref-1", InvoiceFilter())
    with pytest.raises(BillerUnavailable):
        await down.find_account(AccountQuery("mobile", "212623363444", "528605"))
    with pytest.raises(BillerUnavailable):
        await down.load_info()
    await down.aclose()


VALID_INVOICE = {
    "number": "F1", "issuer": "LYDEC", "client_name": "X", "invoice_date": "2026-01-05", "due_date": "2026-01-27",
    "amount_ht": "100.00", "amount_ttc": "120.00", "status": "unpaid",
}


def _page(**changes) -> bytes:
    return json.dumps({"items": [{**VALID_INVOICE, **changes}], "total": 1, "page": 1, "page_size": 10,
                       "totals_ttc": "120.00"}).encode()


@pytest.fixture
async def fake():
    """A biller whose answers each test sets: fake.routes[(method, path)] = (status, body, content type, delay)."""
    routes: dict[tuple[str, str], tuple[int, bytes, str, float]] = {}
    hits: dict[tuple[str, str], int] = {}

    async def handler(request: Request) -> Response:
        key = (request.method, request.url.path)
        hits[key] = hits.get(key, 0) + 1
        status, body, ctype, delay = routes.get(key, (404, b"", "text/plain", 0))
        if delay:
            await asyncio.sleep(delay)
        return Response(body, status_code=status, media_type=ctype)

    app = Starlette(routes=[Route("/{path:path}", handler, methods=["GET", "POST"])])
    async with serve(app) as base:
        biller = HttpBiller(BillerInfo("fake", "Fake", ()), base, "fake-token", timeout=0.5, backoff=0)
        biller.routes, biller.hits = routes, hits  # type: ignore[attr-defined]
        yield biller
        await biller.aclose()


def _set(fake, method: str, path: str, status: int, body: bytes | str, ctype="application/json", delay=0.0):
    fake.routes[(method, path)] = (status, body.encode() if isinstance(body, str) else body, ctype, delay)


INVOICES = "/accounts/A1/invoices"


async def test_valid_fake_page_parses(fake):
    _set(fake, "GET", INVOICES, 200, _page())
    (invoice,) = (await fake.list_invoices("A1", InvoiceFilter())).items
    assert invoice.amount_tva == Decimal("20.00") and invoice.currency == "MAD"


@pytest.mark.parametrize("answer", [
    _page(amount_ht=100.0),  # a float amount
    _page(amount_ttc="120.001"),
    _page(amount_ttc="\u0661\u0662\u0660.00"),  # Arabic-Indic digits: Decimal() would take them
    _page(amount_tva="19.99"),  # HT + TVA != TTC
    _page(amount_ht="-1.00"),
    _page(status="maybe"),
    _page(invoice_date="05/01/2026"),
    _page(currency="EUR"),
    _page(prestations=[{"price": 1.5}]),
    _page(paid_at="2026-01-05T10:00:00"),  # no offset
    _page(number=None),
    b'{"items": [], "total": true, "page": 1, "page_size": 10, "totals_ttc": "0.00"}',
    b'{"items": [], "total": 0, "page": 1, "page_size": 10, "totals_ttc": NaN}',
    b'{"items": [], "total": 0, "page": 1, "page_size": 10, "totals_ttc": 0.0}',
    b"[]", b"null", b"<html>oops</html>", b"\xff\xfe", b"[" * 50_000,
])
async def test_garbage_answer_is_unavailable_not_a_crash(fake, answer):
    _set(fake, "GET", INVOICES, 200, answer)
    with pytest.raises(BillerUnavailable):
        await fake.list_invoices("A1", InvoiceFilter())


@pytest.mark.parametrize("answer", [
    b'{"account_ref": "a/b", "service": "s", "identifier": "i", "holder_name": "h"}',
    b'{"account_ref": "A1", "service": "s", "identifier": "i"}',
    b'{"account_ref": "A1", "service": "s", "identifier": "i", "holder_name": "\\ud800"}',
    b"not json",
])
async def test_garbage_account_is_unavailable(fake, answer):
    _set(fake, "POST", "/accounts/lookup", 200, answer)
    with pytest.raises(BillerUnavailable):
        await fake.find_account(AccountQuery("s", "i"))


async def test_fake_error_codes(fake):
    _set(fake, "POST", "/accounts/lookup", 403, '{"error": {"code": "wrong_payment_code", "message": "no"}}')
    with pytest.raises(WrongPaymentCode):
        await fake.find_account(AccountQuery("s", "i", "1"))
    for status, body in [(418, '{"error": {"code": "teapot"}}'), (404, '{"detail": "Not Found"}'),
                         (429, '{"error": {"code": "rate_limited"}}'), (302, ""), (400, "garbage")]:
        _set(fake, "POST", "/accounts/lookup", status, body)
        with pytest.raises(BillerUnavailable):
            await fake.find_account(AccountQuery("s", "i", "1"))


async def test_5xx_retried_on_get_only(fake):
    _set(fake, "GET", INVOICES, 503, '{"error": {"code": "biller_unavailable"}}')
    with pytest.raises(BillerUnavailable):
        await fake.list_invoices("A1", InvoiceFilter())
    assert fake.hits[("GET", INVOICES)] == 3
    _set(fake, "POST", "/accounts/A1/paid", 500, "boom")
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    with pytest.raises(BillerUnavailable):
        await fake.notify_paid("A1", PaidNotice(("F1",), "T", Decimal("1.00"), now, "cmi"))
    assert fake.hits[("POST", "/accounts/A1/paid")] == 1


async def test_timeout_is_unavailable(fake):
    _set(fake, "GET", INVOICES, 200, _page(), delay=1)
    with pytest.raises(BillerUnavailable):
        await fake.list_invoices("A1", InvoiceFilter())


async def test_pdf_must_be_a_pdf(fake):
    # "F/1" travels as F%2F1; the server sees it decoded.
    _set(fake, "GET", "/accounts/A1/invoices/F/1/pdf", 200, b"<html>", ctype="text/html")
    with pytest.raises(BillerUnavailable):
        await fake.fetch_pdf("A1", "F/1")
    _set(fake, "GET", "/accounts/A1/invoices/F/1/pdf", 200, b"%PDF-1.7 fake", ctype="application/pdf")
    assert (await fake.fetch_pdf("A1", "F/1")).startswith(b"%PDF")


async def test_paid_accepts_any_2xx(fake):
    _set(fake, "POST", "/accounts/A1/paid", 204, b"")
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    await fake.notify_paid("A1", PaidNotice(("F1",), "T", Decimal("1.00"), now, "cmi"))
