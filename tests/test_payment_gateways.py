"""Payment gateways: CMI's ver3 hash and callbacks, Fatourati references, Tashilat codes, signed JSON
callbacks, the registry, and the sandbox simulators over HTTP (uvicorn on loopback).

No database: the round trips use a small app with the sandbox router and a test callback endpoint
that verifies with the gateways and records what arrived.
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import socket
import time
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from types import SimpleNamespace
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response
from hypothesis import HealthCheck, assume, given, settings as hsettings, strategies as st

from core.config import Settings
from core.errors import UnknownGateway
from core.payments.amanpay import AmanpayGateway, format_tashilat_code, new_tashilat_code
from core.payments.base import (
    CHANNEL_CARD,
    CHANNEL_FATOURATI,
    CHANNEL_TASHILAT,
    OUTCOME_APPLIED,
    OUTCOME_DECLINED,
    OUTCOME_DUPLICATE,
    OUTCOME_HELD,
    OUTCOME_REJECTED,
    CallbackRequest,
    CheckoutView,
    ForgedCallback,
    Gateway,
    MalformedCallback,
)
from core.payments.cmi import (
    CmiGateway,
    _hash_value,
    ascii_lower,
    cmi_hash,
    cmi_hash_plaintext,
    natcasecmp,
    natcasesorted,
)
from core.payments.common import luhn_valid
from core.payments.fatourati import WHERE_TO_PAY, FatouratiGateway, new_reference
from core.payments.registry import GatewayRegistry, sandbox_amanpay, sandbox_cmi, sandbox_fatourati
from webhooks.sandbox_gateways import TEST_CARDS, gateway_for_reference, pay_reference
from webhooks.sandbox_gateways import router as sandbox_router

# ../shared/reference/cmi-hash-vectors.json (computed with CMI's PHP merchant kit), copied verbatim.
VECTORS = json.loads(r'''
{
 "request_basic": {
  "store_key": "TEST1234",
  "side": "request",
  "params": {
   "clientid": "600000000",
   "amount": "150.00",
   "currency": "504",
   "oid": "BILL-2024-000123",
   "okUrl": "https://bot.example.ma/cmi/ok",
   "failUrl": "https://bot.example.ma/cmi/fail",
   "callbackUrl": "https://api.example.ma/cmi/callback",
   "shopurl": "https://bot.example.ma/cmi/cancel",
   "TranType": "PreAuth",
   "storetype": "3D_PAY_HOSTING",
   "hashAlgorithm": "ver3",
   "lang": "fr",
   "rnd": "1700000000123456",
   "encoding": "UTF-8",
   "BillToName": "Ahmed Benali",
   "email": "ahmed@example.ma",
   "tel": "0600000000",
   "refreshtime": "5",
   "AutoRedirect": "true",
   "CallbackResponse": "true"
  },
  "expected_plaintext": "150.00|true|Ahmed Benali|true|https://api.example.ma/cmi/callback|600000000|504|ahmed@example.ma|https://bot.example.ma/cmi/fail|ver3|fr|BILL-2024-000123|https://bot.example.ma/cmi/ok|5|1700000000123456|https://bot.example.ma/cmi/cancel|3D_PAY_HOSTING|0600000000|PreAuth|TEST1234",
  "expected_hash": "I+thkLKyovIVLi7Cz/vOQunyFAPqZb+oq5WeM61ok+nd0A2xt+Q8wmWmkGiE1iAbyEvm7zedOldfXNt8A6t7dA=="
 },
 "request_escaping": {
  "store_key": "Key|With\\Pipe",
  "side": "request",
  "params": {
   "clientid": "600000000",
   "amount": "99.90",
   "currency": "504",
   "oid": "A|B\\C",
   "okUrl": "https://x/ok",
   "failUrl": "https://x/fail",
   "callbackUrl": "https://x/cb",
   "TranType": "PreAuth",
   "storetype": "3D_PAY_HOSTING",
   "hashAlgorithm": "ver3",
   "lang": "ar",
   "rnd": "abc",
   "BillToName": "  Société Générale | Test  ",
   "email": "t@example.ma",
   "encoding": "UTF-8"
  },
  "expected_plaintext": "99.90|Société Générale \\| Test|https://x/cb|600000000|504|t@example.ma|https://x/fail|ver3|ar|A\\|B\\\\C|https://x/ok|abc|3D_PAY_HOSTING|PreAuth|Key\\|With\\\\Pipe",
  "expected_hash": "Q+f3GmKezyiCTkS7hy1fTm6sHJS7tVukpBqwJPvIfeUgmrkrbNcbtYeeLnOtDItsbydBNet+86rUm987hyUlOQ=="
 },
 "callback_approved": {
  "store_key": "TEST1234",
  "side": "callback",
  "params": {
   "acqStan": "047228",
   "amount": "150.00",
   "AuthCode": "931386",
   "BillToName": "Ahmed Benali",
   "callbackCall": "true",
   "callbackUrl": "https://api.example.ma/cmi/callback",
   "clientid": "600000000",
   "clientIp": "105.159.248.185",
   "currency": "504",
   "email": "ahmed@example.ma",
   "ErrMsg": "",
   "EXTRA.CARDBRAND": "VISA",
   "EXTRA.CARDISSUER": "CDM",
   "EXTRA.TRXDATE": "20240115 13:10:09",
   "failUrl": "https://bot.example.ma/cmi/fail",
   "hashAlgorithm": "ver3",
   "HostRefNum": "908412047228",
   "lang": "fr",
   "maskedCreditCard": "4000 00** **** 0010",
   "MaskedPan": "400000***0010",
   "mdStatus": "1",
   "oid": "BILL-2024-000123",
   "okUrl": "https://bot.example.ma/cmi/ok",
   "paymentType": "CARD",
   "ProcReturnCode": "00",
   "refreshtime": "5",
   "Response": "Approved",
   "ReturnOid": "BILL-2024-000123",
   "rnd": "F888F0SOOVNdLRDl2d9B",
   "storetype": "3d_pay_hosting",
   "TransId": "24015NKJA13478",
   "TranType": "PreAuth",
   "Ecom_Payment_Card_ExpDate_Month": "12",
   "Ecom_Payment_Card_ExpDate_Year": "26",
   "encoding": "UTF-8",
   "HASH": "ignored"
  },
  "expected_plaintext": "047228|150.00|931386|Ahmed Benali|true|https://api.example.ma/cmi/callback|600000000|105.159.248.185|504|12|26|ahmed@example.ma||VISA|CDM|20240115 13:10:09|https://bot.example.ma/cmi/fail|ver3|908412047228|fr|4000 00** **** 0010|400000***0010|1|BILL-2024-000123|https://bot.example.ma/cmi/ok|CARD|00|5|Approved|BILL-2024-000123|F888F0SOOVNdLRDl2d9B|3d_pay_hosting|24015NKJA13478|PreAuth|TEST1234",
  "expected_hash": "BRi/IuN1+cBAop24SUBxhb3bTCy/131ihI5v70V7E6GaHJNJyyksEEdMYiUGnfDsg7N7K64MvUYGHtlpT3AW+A=="
 },
 "callback_declined": {
  "store_key": "TEST1234",
  "side": "callback",
  "params": {
   "amount": "150.00",
   "clientid": "600000000",
   "currency": "504",
   "ErrMsg": "Insufficient funds",
   "oid": "BILL-2024-000124",
   "ProcReturnCode": "51",
   "Response": "Declined",
   "rnd": "Zz9",
   "mdStatus": "1",
   "hashAlgorithm": "ver3",
   "storetype": "3d_pay_hosting",
   "TranType": "PreAuth",
   "HASH": "x"
  },
  "expected_plaintext": "150.00|600000000|504|Insufficient funds|ver3|1|BILL-2024-000124|51|Declined|Zz9|3d_pay_hosting|PreAuth|TEST1234",
  "expected_hash": "mdbrsocC/dNMIasjKwwfsojck2o9m7Np1MHgdnPYod4EOXk0yJAe8rCL0EP8C5ZL7g3luc9P7+CEbnLZ0XgLRA=="
 }
}
''')
B64_88 = re.compile(r"[A-Za-z0-9+/]{86}==")
PNG = b"\x89PNG\r\n\x1a\n"
KEY = "TEST1234"


def view(**overrides) -> CheckoutView:
    values = dict(token="tok-abc", order_id="FT240115ABCDEF1234", amount=Decimal("3600.00"), issuer="PORTNET",
                  invoice_numbers=("00069321",), language="fr", customer_name="Ahmed Benali",
                  email="ahmed@example.ma")
    values.update(overrides)
    return CheckoutView(**values)


def form_request(fields: dict[str, str]) -> CallbackRequest:
    return CallbackRequest(headers={"content-type": "application/x-www-form-urlencoded"},
                           body=urlencode(list(fields.items())).encode("ascii"),
                           content_type="application/x-www-form-urlencoded")


def json_request(body: bytes, headers: dict[str, str]) -> CallbackRequest:
    return CallbackRequest(headers={k.lower(): v for k, v in headers.items()}, body=body,
                           content_type="application/json")


def cmi() -> CmiGateway:
    return CmiGateway("600000000", KEY, "https://testpayment.cmi.co.ma/fim/est3Dgate", "https://bot.example.ma")


# --- The CMI ver3 hash ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_cmi_hash_vectors(name):
    case = VECTORS[name]
    assert cmi_hash_plaintext(case["params"], case["store_key"], case["side"]) == case["expected_plaintext"]
    assert cmi_hash(case["params"], case["store_key"], case["side"]) == case["expected_hash"]


@pytest.mark.parametrize("name", ["callback_approved", "callback_declined"])
def test_cmi_callback_vectors_verify(name):
    case = VECTORS[name]
    fields = dict(case["params"], HASH=case["expected_hash"])
    event = cmi().verify_callback(form_request(fields))
    assert event.order_id == case["params"]["oid"]
    assert event.amount == Decimal("150.00")
    if name == "callback_approved":
        assert event.approved and event.transaction_id == "24015NKJA13478" and event.reason is None
        assert event.paid_at == datetime(2024, 1, 15, 12, 10, 9, tzinfo=timezone.utc)  # Casablanca was UTC+1
    else:
        assert not event.approved and event.reason == "51 Insufficient funds"
        assert event.transaction_id == "BILL-2024-000124"  # no TransId: the order id
    tampered = dict(fields, amount="15.00")
    with pytest.raises(ForgedCallback):
        cmi().verify_callback(form_request(tampered))


def test_natcasesort_orders_like_php():
    assert natcasesorted(["BillToStreet10", "BillToStreet2", "BillToStreet1"]) == \
        ["BillToStreet1", "BillToStreet2", "BillToStreet10"]
    assert natcasesorted(["b", "A", "C", "a"]) == ["A", "a", "b", "C"]  # case-insensitive, stable
    assert natcasesorted(["oid", "OKURL", "okUrl", "Oid"]) == ["oid", "Oid", "OKURL", "okUrl"]
    # where sorted(key=str.lower) disagrees: numbers, and '_' against letters (PHP upper-cases)
    assert natcasesorted(["x10", "x9"]) == ["x9", "x10"]
    assert sorted(["x10", "x9"], key=str.lower) == ["x10", "x9"]
    assert natcasesorted(["a_b", "aB"]) == ["aB", "a_b"]
    assert sorted(["a_b", "aB"], key=str.lower) == ["a_b", "aB"]
    # leading zeros and "fractional" runs, as strnatcmp does
    assert natcasesorted(["x1", "x01", "x001"]) == ["x001", "x01", "x1"]
    assert natcasecmp("a 2", "a2") == 0 and natcasecmp("", "a") == -1 and natcasecmp("a", "") == 1
    plain = cmi_hash_plaintext({"BillToStreet10": "ten", "billtostreet2": "two", "HASH": "x", "Encoding": "u"}, "k")
    assert plain == "two|ten|k"


def test_request_trims_callback_only_strips_one_newline_and_decodes_entities():
    assert _hash_value("  a b \n", "request") == "a b"
    assert _hash_value(" a &amp; b\n", "callback") == " a & b"
    assert _hash_value("a\n\nb\n", "callback") == "a\n\nb"
    assert cmi_hash_plaintext({"x": "a|b\\c"}, "k|\\") == "a\\|b\\\\c|k\\|\\\\"


_names = st.text(min_size=1, max_size=16).filter(lambda n: ascii_lower(n) not in ("hash", "encoding"))
_fields = st.dictionaries(_names, st.text(max_size=24), max_size=12)
_REQUIRED = {"oid": "FT240115ABCDEF1234", "amount": "150.00", "ProcReturnCode": "00", "Response": "Approved",
             "TransId": "24015NKJA13478"}
_REQUIRED_FOLDED = {ascii_lower(n) for n in _REQUIRED} | {"returnoid", "extra.trxdate", "errmsg"}


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fields=_fields, side=st.sampled_from(["request", "callback"]), key=st.text(max_size=20))
def test_any_fields_hash_to_88_base64_characters(fields, side, key):
    digest = cmi_hash(fields, key, side)
    assert B64_88.fullmatch(digest) and len(base64.b64decode(digest)) == 64


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(extra=_fields, data=st.data())
def test_callback_roundtrip_and_any_mutation_is_forged(extra, data):
    gateway = cmi()
    fields = {n: v for n, v in extra.items() if ascii_lower(n) not in _REQUIRED_FOLDED}
    fields.update(_REQUIRED)
    signed = gateway.sign_callback(fields)
    event = gateway.verify_callback(form_request(signed))
    assert event.approved and event.amount == Decimal("150.00") and event.raw["HASH"] == signed["HASH"]

    name = data.draw(st.sampled_from(sorted(fields)))
    new_value = data.draw(st.text(max_size=24))
    assume(_hash_value(new_value, "callback") != _hash_value(fields[name], "callback"))
    mutated = dict(signed, **{name: new_value})
    with pytest.raises(ForgedCallback):
        gateway.verify_callback(form_request(mutated))


def _gateways():
    return [cmi(), FatouratiGateway("fat-key", "https://bot.example.ma", sandbox=True),
            AmanpayGateway("aman-key", "https://bot.example.ma", sandbox=True)]


@hsettings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=600), content_type=st.sampled_from(
    ["", "application/x-www-form-urlencoded", "application/json", "text/plain", "multipart/form-data"]),
    signature=st.one_of(st.none(), st.text(max_size=80)))
def test_any_bytes_are_malformed_or_forged(body, content_type, signature):
    headers = {} if signature is None else {"x-signature": signature, "x-amanpay-signature": signature}
    for gateway in _gateways():
        with pytest.raises((MalformedCallback, ForgedCallback)):
            gateway.verify_callback(CallbackRequest(headers=headers, body=body, content_type=content_type))


_json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=15)
                            | st.decimals(allow_nan=False, allow_infinity=False, places=3),
                            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                      max_size=3), max_leaves=8)


@hsettings(max_examples=200, deadline=None)
@given(payload=st.dictionaries(st.sampled_from(
    ["tokenRef", "code", "totalAmount", "amount", "currency", "decisionCode", "status", "method", "orderId",
     "fatouratiTransactionNumber", "transactionId", "paidAt", "timestamp", "x"]), _json_values, max_size=10))
def test_signed_but_odd_json_is_malformed_or_forged_never_a_crash(payload):
    body = json.dumps(payload, default=str).encode()
    for gateway in _gateways()[1:]:
        try:
            event = gateway.verify_callback(json_request(body, gateway.sign(body)))
        except (MalformedCallback, ForgedCallback):
            continue
        assert isinstance(event.amount, Decimal)


# --- CMI form, start and answers ------------------------------------------------------------


def test_cmi_form_fields():
    gateway = cmi()
    fields = gateway.form_fields(view(amount=Decimal("150"), language="ar"), "https://bot.example.ma/ok",
                                 "https://bot.example.ma/fail", shop_url="https://bot.example.ma/cancel", rnd="r1")
    assert list(fields)[-1] == "HASH"
    assert fields["amount"] == "150.00" and fields["currency"] == "504" and fields["oid"] == "FT240115ABCDEF1234"
    assert fields["TranType"] == "PreAuth" and fields["storetype"] == "3D_PAY_HOSTING"
    assert fields["hashAlgorithm"] == "ver3" and fields["encoding"] == "UTF-8" and fields["lang"] == "ar"
    assert fields["callbackUrl"] == "https://bot.example.ma/webhooks/payments/cmi"
    assert fields["BillToName"] == "Ahmed Benali" and fields["email"] == "ahmed@example.ma"
    assert fields["HASH"] == cmi_hash(fields, KEY, "request") and gateway.verify_request(fields)
    assert KEY not in json.dumps(fields) and KEY not in repr(gateway)
    bare = gateway.form_fields(view(customer_name=None, email=None, language="de"), "https://o", "https://f")
    assert "BillToName" not in bare and "email" not in bare and bare["lang"] == "fr"
    with pytest.raises(ValueError):
        gateway.form_fields(view(amount=Decimal("1.005")), "https://o", "https://f")


async def test_cmi_start_gives_our_pay_link():
    instruction = await cmi().start(view(), CHANNEL_CARD)
    assert instruction.url == "https://bot.example.ma/pay/tok-abc" and instruction.gateway == "cmi"
    with pytest.raises(ValueError):
        await cmi().start(view(), CHANNEL_FATOURATI)


def test_cmi_answers_follow_cmis_table():
    gateway = cmi()
    expected = {OUTCOME_APPLIED: b"ACTION=POSTAUTH", OUTCOME_DUPLICATE: b"ACTION=POSTAUTH",
                OUTCOME_DECLINED: b"APPROVED", OUTCOME_REJECTED: b"FAILURE", OUTCOME_HELD: b"FAILURE"}
    for outcome, body in expected.items():
        answer = gateway.answer(outcome, None)
        assert (answer.status, answer.body, answer.media_type) == (200, body, "text/plain")


def test_cmi_refuses_duplicates_and_foreign_content_types():
    fields = cmi().sign_callback(dict(_REQUIRED))
    body = urlencode(list(fields.items())) + "&hash=x"
    with pytest.raises(MalformedCallback):
        cmi().verify_callback(CallbackRequest(headers={}, body=body.encode()))
    with pytest.raises(MalformedCallback):
        cmi().verify_callback(CallbackRequest(headers={}, body=form_request(fields).body,
                                              content_type="application/json"))
    unsigned = {k: v for k, v in fields.items() if k != "HASH"}
    with pytest.raises(ForgedCallback):
        cmi().verify_callback(form_request(unsigned))


# --- Fatourati ---------------------------------------------------------------------------------


def test_fatourati_references_are_13_digits_unique_and_checked():
    draws = [new_reference() for _ in range(10_000)]
    assert len(set(draws)) == len(draws)
    assert all(len(r) == 13 and r.isdigit() and r[0] != "0" and luhn_valid(r) for r in draws)


async def test_fatourati_start():
    gateway = FatouratiGateway("k", "https://bot.example.ma", expiry_hours=3, sandbox=True)
    before = datetime.now(timezone.utc)
    instruction = await gateway.start(view(), CHANNEL_FATOURATI)
    assert re.fullmatch(r"[1-9]\d{12}", instruction.reference) and instruction.sandbox
    assert before + timedelta(hours=3) <= instruction.expires_at <= datetime.now(timezone.utc) + timedelta(hours=3)
    assert instruction.qr_png.startswith(PNG)
    assert instruction.where_to_pay == WHERE_TO_PAY and "CASHPLUS" in WHERE_TO_PAY and len(WHERE_TO_PAY) == 11


def _fatourati_body(**overrides) -> bytes:
    payload = {"tokenRef": "1089010000162", "orderId": None, "totalAmount": "3600.00", "currency": "504",
               "selectedItems": [], "fatouratiTransactionNumber": "FTN123", "channel": "CASHPLUS",
               "operator": "X", "decisionCode": 0, "timestamp": int(time.time())}
    payload.update(overrides)
    return json.dumps(payload).encode()


def test_fatourati_callback_signature_replay_and_answers():
    gateway = FatouratiGateway("fat-key", "https://bot.example.ma", sandbox=True)
    body = _fatourati_body()
    event = gateway.verify_callback(json_request(body, gateway.sign(body)))
    assert (event.reference, event.amount, event.approved, event.transaction_id, event.order_id) == \
        ("1089010000162", Decimal("3600.00"), True, "FTN123", None)
    refused = _fatourati_body(decisionCode=1, totalAmount=3600.5)
    event_refused = gateway.verify_callback(json_request(refused, gateway.sign(refused)))
    assert not event_refused.approved and event_refused.reason.startswith("05 ")
    assert event_refused.amount == Decimal("3600.5")

    with pytest.raises(ForgedCallback):  # signed with another key
        gateway.verify_callback(json_request(body, FatouratiGateway("other", "https://x", sandbox=True).sign(body)))
    with pytest.raises(ForgedCallback):  # a byte changed after signing
        gateway.verify_callback(json_request(body.replace(b"3600.00", b"3601.00"), gateway.sign(body)))
    for stale in (int(time.time()) - 11 * 60, int(time.time()) + 11 * 60):
        old = _fatourati_body(timestamp=stale)
        with pytest.raises(ForgedCallback):
            gateway.verify_callback(json_request(old, gateway.sign(old)))
    with pytest.raises(MalformedCallback):
        bad = _fatourati_body(tokenRef="12345")
        gateway.verify_callback(json_request(bad, gateway.sign(bad)))

    applied = gateway.answer(OUTCOME_APPLIED, event)
    assert applied.status == 200 and json.loads(applied.body)["receiptNumber"].startswith("FTR")
    assert gateway.answer(OUTCOME_DUPLICATE, event).body == applied.body  # same receipt again
    assert json.loads(gateway.answer(OUTCOME_DECLINED, event_refused).body) == {"receiptNumber": None}
    assert gateway.answer(OUTCOME_REJECTED, None).status == 400
    assert gateway.answer(OUTCOME_HELD, event).status == 400


async def test_fatourati_real_mode_asks_the_aggregator():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "at"})
        return httpx.Response(200, json={"tokenRef": "1089010000162", "expiryDate": "2030-01-01T10:00:00+00:00"})

    gateway = FatouratiGateway("api-key", "https://bot.example.ma", api_url="https://fat.example",
                               merchant_code="M1", store_code="S1", client_id="c", client_secret="s",
                               transport=httpx.MockTransport(handler))
    instruction = await gateway.start(view(), CHANNEL_FATOURATI)
    assert instruction.reference == "1089010000162" and not instruction.sandbox
    assert instruction.expires_at == datetime(2030, 1, 1, 10, tzinfo=timezone.utc)
    assert seen[1].url.path == "/api/v1/merchants/M1/stores/S1/token"
    assert seen[1].headers["authorization"] == "Bearer at" and len(seen[1].headers["x-signature"]) == 64
    assert json.loads(seen[1].content)["totalAmount"] == "3600.00"


# --- Amanpay / Tashilat ----------------------------------------------------------------------


def test_tashilat_code_format():
    assert format_tashilat_code("180857637947") == "18 0857 637-947"
    codes = [new_tashilat_code() for _ in range(2000)]
    assert len(set(codes)) == len(codes)
    assert all(re.fullmatch(r"\d{2} \d{4} \d{3}-\d{3}", format_tashilat_code(c)) and luhn_valid(c) for c in codes)
    with pytest.raises(ValueError):
        format_tashilat_code("12345")


async def test_amanpay_start_sandbox_links():
    gateway = AmanpayGateway("s", "https://bot.example.ma", expiry_hours=48, sandbox=True)
    instruction = await gateway.start(view(language="ar"), CHANNEL_TASHILAT)
    assert instruction.display_reference == format_tashilat_code(instruction.reference)
    assert instruction.qr_png.startswith(PNG) and instruction.where_to_pay == ("Tashilat",)
    assert [label for label, _ in instruction.links] == ["Pay by card", "Pay with PayDirect", "Pay with Amanty"]
    assert all(url.startswith("https://bot.example.ma/sandbox/amanpay/") and "amount=3600.00" in url
               and f"code={instruction.reference}" in url for _, url in instruction.links)
    assert timedelta(hours=47) < instruction.expires_at - datetime.now(timezone.utc) <= timedelta(hours=48)


def test_amanpay_callback_contract():
    gateway = AmanpayGateway("aman-key", "https://bot.example.ma", sandbox=True)
    payload = {"code": "180857637947", "orderId": "FT1", "transactionId": "AMP1", "amount": "1920.00",
               "currency": "MAD", "method": "tashilat", "status": "paid", "timestamp": int(time.time())}
    body = json.dumps(payload).encode()
    headers = gateway.sign(body)
    assert headers["x-amanpay-signature"].startswith("sha256=")
    event = gateway.verify_callback(json_request(body, headers))
    assert (event.reference, event.order_id, event.amount, event.approved) == \
        ("180857637947", "FT1", Decimal("1920.00"), True)
    bare_hex = headers["x-amanpay-signature"].removeprefix("sha256=")
    with pytest.raises(ForgedCallback):
        gateway.verify_callback(json_request(body, {"x-amanpay-signature": bare_hex}))
    old = json.dumps(dict(payload, timestamp=int(time.time()) - 3600)).encode()
    with pytest.raises(ForgedCallback):
        gateway.verify_callback(json_request(old, gateway.sign(old)))
    assert json.loads(gateway.answer(OUTCOME_APPLIED, event).body) == {"status": "ok"}
    assert gateway.answer(OUTCOME_DECLINED, event).status == 200
    assert gateway.answer(OUTCOME_REJECTED, None).status == 400
    assert gateway.answer(OUTCOME_HELD, event).status == 400


# --- Registry ----------------------------------------------------------------------------------


def test_registry_uses_sandboxes_without_credentials():
    settings = Settings(sandbox=True, secret_key="s1", public_base_url="https://bot.example.ma/")
    registry = GatewayRegistry.from_settings(settings)
    assert registry.codes == ("cmi", "fatourati", "amanpay") and all(g.sandbox for g in registry)
    assert all(isinstance(g, Gateway) for g in registry)
    assert registry.get("cmi").gateway_url == "https://bot.example.ma/sandbox/cmi/est3Dgate"
    assert registry.for_channel(CHANNEL_TASHILAT).code == "amanpay"
    assert registry.for_channel(CHANNEL_FATOURATI).code == "fatourati"
    with pytest.raises(UnknownGateway):
        registry.get("paypal")
    with pytest.raises(UnknownGateway):
        registry.for_channel("cheque")
    # the sandbox keys come from SECRET_KEY: another secret, other keys
    other = GatewayRegistry.from_settings(Settings(sandbox=True, secret_key="s2"))
    body = b"{}"
    assert registry.get("fatourati").sign(body) != other.get("fatourati").sign(body)


def test_registry_real_gateways_and_no_sandbox_in_production():
    settings = Settings(sandbox=False, cmi_client_id="600001234", cmi_store_key="real-key",
                        amanpay_merchant_id="M", amanpay_secret="sec", amanpay_api_url="https://amanpay.example")
    registry = GatewayRegistry.from_settings(settings)
    assert registry.codes == ("cmi", "amanpay") and not any(g.sandbox for g in registry)
    assert registry.get("cmi").gateway_url == "https://testpayment.cmi.co.ma/fim/est3Dgate"
    with pytest.raises(UnknownGateway):
        registry.for_channel(CHANNEL_FATOURATI)
    assert len(GatewayRegistry.from_settings(Settings(sandbox=False))) == 0


# --- The sandbox simulators over HTTP ---------------------------------------------------------------


@asynccontextmanager
async def serve(make_app):
    """make_app(base_url) under uvicorn on a free loopback port, in this event loop."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(make_app(base), log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before starting")
            await asyncio.sleep(0.01)
        yield base
    finally:
        server.should_exit = True
        await task
        sock.close()


class Recorder:
    def __init__(self) -> None:
        self.callbacks: list[tuple[str, CallbackRequest, object]] = []
        self.returns: list[tuple[str, dict[str, str]]] = []
        self.arrived = asyncio.Event()


@pytest.fixture
async def sandbox_app():
    """(base url, settings, recorder): the sandbox router + a callback endpoint that verifies."""
    recorder = Recorder()
    holder = {}

    def make_app(base: str) -> FastAPI:
        settings = Settings(sandbox=True, secret_key="sandbox-gateway-test", public_base_url=base,
                            sandbox_cmi_late_seconds=0.3)
        holder["settings"] = settings
        gateways = GatewayRegistry.from_settings(settings)
        app = FastAPI()
        app.state.fatoura = SimpleNamespace(settings=settings)
        app.include_router(sandbox_router)

        @app.post("/webhooks/payments/{code}")
        async def callback(code: str, request: Request) -> Response:
            gateway = gateways.get(code)
            cb = CallbackRequest(headers={k.lower(): v for k, v in request.headers.items()},
                                 body=await request.body(), content_type=request.headers.get("content-type", ""))
            try:
                event = gateway.verify_callback(cb)
                outcome = OUTCOME_APPLIED if event.approved else OUTCOME_DECLINED
            except (ForgedCallback, MalformedCallback) as error:
                event, outcome = error, OUTCOME_REJECTED
            recorder.callbacks.append((code, cb, event))
            recorder.arrived.set()
            answer = gateway.answer(outcome, None if outcome == OUTCOME_REJECTED else event)
            return Response(answer.body, status_code=answer.status, media_type=answer.media_type)

        @app.post("/return/{which}")
        async def back(which: str, request: Request) -> Response:
            recorder.returns.append((which, dict(parse_qsl((await request.body()).decode()))))
            return Response(which)

        return app

    async with serve(make_app) as base:
        yield base, holder["settings"], recorder


def _hidden_value(page: str, name: str) -> str:
    match = re.search(rf'name="{re.escape(name)}" value="([^"]*)"', page)
    assert match, f"no hidden {name}"
    return match.group(1)


def _autopost(page: str) -> tuple[str, dict[str, str]]:
    import html as html_lib

    action = html_lib.unescape(re.search(r'<form id="back" method="post" action="([^"]*)"', page).group(1))
    fields = {html_lib.unescape(n): html_lib.unescape(v)
              for n, v in re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', page)}
    return action, fields


async def _pay_card(base: str, settings: Settings, pan: str, *, lang: str = "fr", order_id: str = "FT240115AAAA0001"):
    gateway = sandbox_cmi(settings)
    fields = gateway.form_fields(view(order_id=order_id, language=lang), f"{base}/return/ok", f"{base}/return/fail")
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        page = await client.post(gateway.gateway_url, data=fields)
        assert page.status_code == 200, page.text
        result = await client.post(f"{base}/sandbox/cmi/pay",
                                   data={"_request": _hidden_value(page.text, "_request"), "pan": pan,
                                         "exp": "12/30", "cvv": "123"})
        assert result.status_code == 200
        target, returned = _autopost(result.text)
        await client.post(target, data=returned)  # what the browser's script does
    return page.text, target, returned


async def test_sandbox_cmi_approved_card_round_trip(sandbox_app, caplog):
    caplog.set_level(logging.DEBUG)
    base, settings, recorder = sandbox_app
    page, target, returned = await _pay_card(base, settings, "4000 0000 0000 0002")
    assert "4000 0000 0000 0002" in page and "Paiement sécurisé par carte" in page  # test cards listed, in the form's language (fr)
    code, request, event = recorder.callbacks[-1]
    assert code == "cmi" and not isinstance(event, Exception)
    assert event.approved and event.order_id == "FT240115AAAA0001" and event.amount == Decimal("3600.00")
    fields = dict(parse_qsl(request.body.decode()))
    assert fields["MaskedPan"] == "400000***0002" and "CallbackURL" in fields and fields["trantype"] == "PreAuth"
    assert fields["storetype"] == "3d_pay_hosting"
    assert sandbox_cmi(settings).verify_callback(request).transaction_id == event.transaction_id
    assert target == f"{base}/return/ok" and recorder.returns[-1][0] == "ok"
    assert returned["ProcReturnCode"] == "00"
    everything = caplog.text + request.body.decode() + json.dumps(returned) + repr(event.raw)
    assert "4000000000000002" not in everything and "cvv" not in request.body.decode().lower()


@pytest.mark.parametrize("pan, proc, md_status", [("4000000000000010", "05", "1"), ("4000000000000036", "51", "1"),
                                                  ("4000000000000028", None, "0")])
async def test_sandbox_cmi_refused_cards(sandbox_app, pan, proc, md_status):
    base, settings, recorder = sandbox_app
    _, target, _ = await _pay_card(base, settings, pan, lang="en")
    _, request, event = recorder.callbacks[-1]
    fields = dict(parse_qsl(request.body.decode()))
    assert not event.approved and fields.get("ProcReturnCode") == proc and fields["mdStatus"] == md_status
    assert fields.get("ProcReturnCode") != "00"
    assert target == f"{base}/return/fail"


async def test_sandbox_cmi_late_callback(sandbox_app):
    base, settings, recorder = sandbox_app
    _, target, _ = await _pay_card(base, settings, "4000000000000044")
    assert target == f"{base}/return/ok" and recorder.callbacks == []  # back before the callback
    await asyncio.wait_for(recorder.arrived.wait(), 5)
    assert recorder.callbacks[-1][2].approved


async def test_sandbox_cmi_page_refuses_bad_hash_and_cards(sandbox_app):
    base, settings, recorder = sandbox_app
    gateway = sandbox_cmi(settings)
    fields = gateway.form_fields(view(language="ar"), f"{base}/return/ok", f"{base}/return/fail")
    async with httpx.AsyncClient(trust_env=False) as client:
        forged = await client.post(gateway.gateway_url, data=dict(fields, amount="1.00"))
        assert forged.status_code == 400 and 'dir="rtl"' in forged.text
        assert (await client.post(gateway.gateway_url, content=b"\xff\x00garbage",
                                  headers={"content-type": "application/x-www-form-urlencoded"})).status_code == 400
        page = await client.post(gateway.gateway_url, data=fields)
        request_blob = _hidden_value(page.text, "_request")
        again = await client.post(f"{base}/sandbox/cmi/pay", data={"_request": request_blob, "pan": "4000000000000003"})
        assert again.status_code == 200 and 'role="alert"' in again.text  # not Luhn-valid: asked again
        tampered = base64.urlsafe_b64encode(json.dumps(
            [[k, "1.00" if k == "amount" else v] for k, v in fields.items()]).encode()).decode()
        refused = await client.post(f"{base}/sandbox/cmi/pay", data={"_request": tampered, "pan": "4000000000000002"})
        assert refused.status_code == 400
    assert recorder.callbacks == []
    assert all(luhn_valid(card.pan) for card in TEST_CARDS)


async def test_sandbox_counter_pays_references(sandbox_app):
    base, settings, recorder = sandbox_app
    result = await pay_reference(base, "fatourati", "1089010000162", "3600", settings=settings)
    assert result.accepted and json.loads(result.body)["receiptNumber"]
    _, request, event = recorder.callbacks[-1]
    assert event.reference == "1089010000162" and event.amount == Decimal("3600.00") and event.approved
    assert sandbox_fatourati(settings).verify_callback(request).transaction_id == event.transaction_id

    assert gateway_for_reference("18 0857 637-947") == "amanpay"
    assert gateway_for_reference("1089010000162") == "fatourati"
    late = await pay_reference(base, None, "18 0857 637-947", Decimal("1920.00"), late=True, settings=settings)
    assert late.accepted
    event = recorder.callbacks[-1][2]
    assert event.reference == "180857637947" and event.gateway == "amanpay"
    hours = event.paid_at - datetime.now(timezone.utc)
    assert timedelta(hours=settings.amanpay_expiry_hours) < hours <= timedelta(hours=settings.amanpay_expiry_hours + 1)
    assert sandbox_amanpay(settings).verify_callback(recorder.callbacks[-1][1]).reference == "180857637947"

    forged = await pay_reference(base, "fatourati", "1089010000162", "3600", settings=settings, key="wrong")
    assert forged.status == 400 and isinstance(recorder.callbacks[-1][2], ForgedCallback)
    with pytest.raises(ValueError):
        await pay_reference(base, "fatourati", "123", "3600", settings=settings)

    async with httpx.AsyncClient(trust_env=False) as client:
        form = await client.get(f"{base}/sandbox/counter?lang=ar")
        assert form.status_code == 200 and 'dir="rtl"' in form.text
        paid = await client.post(f"{base}/sandbox/counter?lang=en",
                                 data={"gateway": "fatourati", "reference": "1089010000162", "amount": "3599.99"})
        assert paid.status_code == 200 and 'class="ok"' in paid.text
        assert recorder.callbacks[-1][2].amount == Decimal("3599.99")  # the wrong amount, as typed
        bad = await client.post(f"{base}/sandbox/counter", data={"gateway": "fatourati", "reference": "1",
                                                                 "amount": "x"})
        assert bad.status_code == 200 and 'class="error"' in bad.text


async def test_sandbox_amanpay_links(sandbox_app):
    base, settings, recorder = sandbox_app
    instruction = await sandbox_amanpay(settings).start(view(), CHANNEL_TASHILAT)
    card_url = dict((label, url) for label, url in instruction.links)["Pay by card"]
    async with httpx.AsyncClient(trust_env=False) as client:
        page = await client.get(card_url)
        assert page.status_code == 200 and instruction.display_reference in page.text
        action = re.search(r'<form method="post" action="([^"]*)"', page.text).group(1).replace("&amp;", "&")
        refused = await client.post(f"{base}{action}", data={"decision": "refused"})
        assert refused.status_code == 200
        assert (await client.get(f"{base}/sandbox/amanpay/card?code=1&amount=1")).status_code == 404
    event = recorder.callbacks[-1][2]
    assert not event.approved and event.raw["method"] == "card" and event.reference == instruction.reference
