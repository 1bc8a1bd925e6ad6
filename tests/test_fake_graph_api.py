"""The fake Graph API refuses what Meta refuses, so a test that passes against it means something."""
from __future__ import annotations

import httpx
import pytest

from tests.fakes.graph_api import FakeGraphAPI

TO = "212600000040"


def buttons(n: int, title: str = "Choix") -> dict:
    return {"type": "interactive", "interactive": {"type": "button", "body": {"text": "Corps"}, "action": {
        "buttons": [{"type": "reply", "reply": {"id": f"b{i}", "title": f"{title} {i}"[:60]}} for i in range(n)]}}}


def rows(n: int, title: str = "Ligne") -> dict:
    return {"type": "interactive", "interactive": {"type": "list", "body": {"text": "Corps"}, "action": {
        "button": "Choisir", "sections": [{"rows": [{"id": f"r{i}", "title": f"{title} {i}"} for i in range(n)]}]}}}


REFUSED = {
    "4 reply buttons": (buttons(4), 131009),
    "a button title of 21 characters": (buttons(1, "x" * 19), 131009),
    "11 list rows": (rows(11), 131009),
    "a row title of 25 characters": (rows(1, "y" * 23), 131009),
    "a body of 1025 characters": ({"type": "interactive", "interactive": {
        "type": "button", "body": {"text": "z" * 1025}, "action": buttons(1)["interactive"]["action"]}}, 131009),
    "a text of 4097 characters": ({"type": "text", "text": {"body": "t" * 4097}}, 131009),
    "a document never uploaded": ({"type": "document", "document": {"id": "999", "filename": "f.pdf"}}, 131053),
    "a template parameter with a line break": ({"type": "template", "template": {
        "name": "fatoura_notice", "language": {"code": "fr_MA"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "a\nb"}]}]}}, 132018),
    "a cta_url without an http link": ({"type": "interactive", "interactive": {"type": "cta_url", "body": {"text": "Payer"},
        "action": {"name": "cta_url", "parameters": {"display_text": "Payer", "url": "javascript:alert(1)"}}}}, 131009),
}


@pytest.fixture
async def graph():
    async with FakeGraphAPI() as server:
        server.customer(TO).last_inbound = server.now()
        yield server


async def post(graph: FakeGraphAPI, message: dict, token: str | None = None) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(f"{graph.base_url}/{graph.phone_number_id}/messages",
                                 headers={"Authorization": f"Bearer {token or graph.token}"},
                                 json={"messaging_product": "whatsapp", "to": TO, **message})


@pytest.mark.parametrize("case", sorted(REFUSED))
async def test_meta_refuses_it_and_so_does_the_fake(graph, case):
    message, code = REFUSED[case]
    answer = await post(graph, message)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == code
    assert graph.sent == []


async def test_what_meta_accepts_the_fake_records(graph):
    for message in (buttons(3), rows(10), {"type": "text", "text": {"body": "Bonjour"}}):
        answer = await post(graph, message)
        assert answer.status_code == 200 and answer.json()["messages"][0]["id"].startswith("wamid.")
    assert [s.type for s in graph.sent] == ["interactive", "interactive", "text"]


async def test_a_wrong_token_and_a_closed_window_are_refused(graph):
    assert (await post(graph, {"type": "text", "text": {"body": "x"}}, token="stolen")).json()["error"]["code"] == 190
    graph.travel(24 * 3600 + 1)
    answer = await post(graph, {"type": "text", "text": {"body": "x"}})
    assert answer.json()["error"]["code"] == 131047
    template = {"type": "template", "template": {"name": "fatoura_notice", "language": {"code": "fr_MA"},
                                                 "components": [{"type": "body", "parameters": [
                                                     {"type": "text", "text": "Nouvelle facture"}]}]}}
    assert (await post(graph, template)).status_code == 200  # a template goes outside the window
