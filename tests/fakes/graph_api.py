"""A fake WhatsApp Cloud API (Graph API) that our real client talks to over HTTP on loopback.

It serves `POST /{version}/{phone_number_id}/messages` and `/media`, refuses what Meta refuses
(reply buttons over 3 or titles over 20 characters, list rows over 10 or titles over 24, bodies
over 1024, unknown media, free-form messages outside the customer's 24-hour window, template
parameters with newlines, a wrong token) with Meta's error JSON, records every message, and
plays the customers: they type, tap buttons and list rows, share contacts, and their envelopes are
POSTed, signed with the app secret, to our webhook. Error codes can be injected (`fail_next`).

    async with FakeGraphAPI(app_secret="s3cr3t") as graph:
        graph.webhook_url = base + "/webhooks/whatsapp"
        amina = graph.customer("212623363444", "Amina")
        await amina.say("Bonjour")
        [menu] = await amina.replies()
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import httpx
from aiohttp import web

VERSION = "v21.0"
WINDOW = 24 * 3600
IMAGE_TYPES = {"image/png": 5 * 1024 * 1024, "image/jpeg": 5 * 1024 * 1024}
DOCUMENT_TYPES = {"application/pdf": 100 * 1024 * 1024,
                  "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": 100 * 1024 * 1024,
                  "text/plain": 100 * 1024 * 1024}  # no ZIP: WhatsApp refuses archives
TITLES = {131047: "Re-engagement message", 131026: "Message undeliverable", 131049: "This message was not delivered "
          "to maintain healthy ecosystem engagement.", 130429: "Rate limit hit", 131056: "(Business Account, Consumer "
          "Account) pair rate limit hit", 131053: "Media upload error", 131009: "Parameter value is not valid",
          100: "Invalid parameter", 190: "Invalid OAuth access token", 132000: "Number of parameters does not match "
          "the expected number of params", 132018: "There was an issue with the parameters in your template."}


class GraphFault(Exception):
    def __init__(self, code: int, details: str, http_status: int = 400) -> None:
        super().__init__(details)
        self.code, self.details, self.http_status = code, details, http_status

    def payload(self) -> dict[str, Any]:
        return {"error": {"message": f"({'#' if self.code < 1000 else ''}{self.code}) {TITLES.get(self.code, 'Error')}",
                          "type": "OAuthException", "code": self.code,
                          "error_data": {"messaging_product": "whatsapp", "details": self.details},
                          "fbtrace_id": "A" + hashlib.sha1(self.details.encode()).hexdigest()[:20]}}


def invalid(details: str) -> GraphFault:
    return GraphFault(131009, details)


@dataclass
class Sent:
    """One message the business sent, as the API received it."""

    wamid: str
    to: str
    body: dict[str, Any]
    at: float

    @property
    def type(self) -> str:
        return self.body["type"]

    @property
    def interactive(self) -> dict[str, Any]:
        return self.body.get("interactive") or {}

    @property
    def text(self) -> str:
        """What the customer reads: the text, the interactive body or the caption."""
        if self.type == "text":
            return self.body["text"]["body"]
        if self.type == "interactive":
            return self.interactive.get("body", {}).get("text", "")
        if self.type in ("document", "image"):
            return self.body[self.type].get("caption", "")
        return ""

    @property
    def choices(self) -> list[tuple[str, str]]:
        """(id, title) of the reply buttons or list rows."""
        action = self.interactive.get("action") or {}
        if self.interactive.get("type") == "button":
            return [(b["reply"]["id"], b["reply"]["title"]) for b in action.get("buttons", [])]
        if self.interactive.get("type") == "list":
            return [(r["id"], r["title"]) for s in action.get("sections", []) for r in s.get("rows", [])]
        return []

    @property
    def descriptions(self) -> list[str]:
        action = self.interactive.get("action") or {}
        return [r.get("description", "") for s in action.get("sections", []) for r in s.get("rows", [])]


@dataclass
class Media:
    media_id: str
    filename: str
    content: bytes
    mime_type: str


@dataclass
class Fault:
    code: int
    match: Callable[[dict[str, Any]], bool]
    times: int = 1


@dataclass
class Customer:
    """A WhatsApp user writing to the business."""

    graph: FakeGraphAPI
    wa_id: str | None
    name: str
    user_id: str | None = None
    last_inbound: float | None = None
    posted: list[dict[str, Any]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return self.wa_id or self.user_id or ""

    def envelope(self, message: dict[str, Any]) -> dict[str, Any]:
        message = {"id": self.graph.new_wamid(), "timestamp": str(int(self.graph.now())), **message}
        if self.wa_id:
            message["from"] = self.wa_id
        if self.user_id:
            message["from_user_id"] = self.user_id
        contact: dict[str, Any] = {"profile": {"name": self.name}}
        if self.wa_id:
            contact["wa_id"] = self.wa_id
        if self.user_id:
            contact["user_id"] = self.user_id
        return self.graph.envelope({"contacts": [contact], "messages": [message]})

    async def post(self, message: dict[str, Any], times: int = 1) -> list[httpx.Response]:
        envelope = self.envelope(message)
        self.posted.append(envelope)
        self.last_inbound = self.graph.now()
        return await self.graph.post_webhook(envelope, times=times)

    async def say(self, text: str, times: int = 1) -> list[httpx.Response]:
        return await self.post({"type": "text", "text": {"body": text}}, times=times)

    async def share_contact(self, phone: str, wa_id: str) -> list[httpx.Response]:
        return await self.post({"type": "contacts", "contacts": [{
            "name": {"formatted_name": self.name, "first_name": self.name},
            "phones": [{"phone": phone, "wa_id": wa_id, "type": "CELL"}]}]})

    async def send_image(self) -> list[httpx.Response]:
        return await self.post({"type": "image", "image": {"mime_type": "image/jpeg", "sha256": "x" * 44,
                                                           "id": "1234567890"}})

    def last_with(self, title: str) -> Sent:
        for sent in reversed(self.graph.sent_to(self.address)):
            if any(title in choice for _, choice in sent.choices):
                return sent
        raise AssertionError(f"no button or row {title!r} in the messages to {self.address}")

    async def tap(self, title: str, on: Sent | None = None) -> list[httpx.Response]:
        """Tap the reply button or list row whose title holds `title` (on the latest message
        that has one, or on `on`)."""
        sent = on or self.last_with(title)
        reply_id, shown = next((i, t) for i, t in sent.choices if title in t)
        kind = "button_reply" if sent.interactive["type"] == "button" else "list_reply"
        reply: dict[str, Any] = {"id": reply_id, "title": shown}
        return await self.post({"type": "interactive", "context": {"from": self.graph.display_phone, "id": sent.wamid},
                                "interactive": {"type": kind, kind: reply}})

    async def quick_reply(self, sent: Sent, text: str, payload: str) -> list[httpx.Response]:
        return await self.post({"type": "button", "context": {"from": self.graph.display_phone, "id": sent.wamid},
                                "button": {"text": text, "payload": payload}})

    async def replies(self, after: int = 0, timeout: float = 10.0, settle: float = 0.3) -> list[Sent]:
        """The messages sent to this customer from index `after` on, once they stop coming."""
        await self.graph.wait_for(lambda: len(self.graph.sent_to(self.address)) > after, timeout)
        count = -1
        while count != len(self.graph.sent_to(self.address)):
            count = len(self.graph.sent_to(self.address))
            await asyncio.sleep(settle)
        return self.graph.sent_to(self.address)[after:]


class FakeGraphAPI:
    def __init__(self, *, token: str = "EAAG-test-token", phone_number_id: str = "106540352242922",
                 app_secret: str = "fake-app-secret", display_phone: str = "212522000000",
                 templates: dict[str, int] | None = None) -> None:
        self.token, self.phone_number_id, self.app_secret = token, phone_number_id, app_secret
        self.display_phone = display_phone
        self.templates = templates  # approved template name -> number of body parameters (None: any)
        self.webhook_url: str | None = None
        self.sent: list[Sent] = []
        self.refused: list[tuple[dict[str, Any], GraphFault]] = []
        self.media: dict[str, Media] = {}
        self.customers: dict[str, Customer] = {}
        self.faults: list[Fault] = []
        self.clock_offset = 0.0
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._http: httpx.AsyncClient | None = None
        self.base_url = ""

    # -- lifecycle
    async def start(self) -> FakeGraphAPI:
        app = web.Application(client_max_size=110 * 1024 * 1024)
        app.router.add_post("/{version}/{phone}/messages", self._messages)
        app.router.add_post("/{version}/{phone}/media", self._upload)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/{VERSION}"
        self._http = httpx.AsyncClient(timeout=30)
        return self

    async def stop(self) -> None:
        if self._http:
            await self._http.aclose()
        if self._runner:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeGraphAPI:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- scripting
    def now(self) -> float:
        return time.time() + self.clock_offset

    def travel(self, seconds: float) -> None:
        """Move the fake's clock (the customers' 24-hour windows) forward."""
        self.clock_offset += seconds

    def new_wamid(self) -> str:
        raw = f"{self.display_phone}-{next(self._ids):08d}-{time.time_ns()}".encode()
        return "wamid." + base64.b64encode(raw).decode().rstrip("=")

    def customer(self, wa_id: str | None, name: str = "Client", user_id: str | None = None) -> Customer:
        customer = Customer(self, wa_id, name, user_id)
        for key in (wa_id, user_id):
            if key:
                self.customers[key] = customer
        return customer

    def fail_next(self, code: int, *, times: int = 1, when: Callable[[dict[str, Any]], bool] = lambda body: True) -> None:
        """Answer the next `times` matching sends with Meta's error `code`."""
        self.faults.append(Fault(code, when, times))

    def sent_to(self, address: str) -> list[Sent]:
        return [s for s in self.sent if s.to == address]

    def envelope(self, value: dict[str, Any]) -> dict[str, Any]:
        return {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
            "value": {"messaging_product": "whatsapp",
                      "metadata": {"display_phone_number": self.display_phone, "phone_number_id": self.phone_number_id},
                      **value},
            "field": "messages"}]}]}

    def status_envelope(self, sent: Sent, status: str, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        item: dict[str, Any] = {"id": sent.wamid, "status": status, "timestamp": str(int(self.now())),
                                "recipient_id": sent.to}
        if status != "failed":
            item["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "utility"}
        if errors:
            item["errors"] = errors
        return self.envelope({"statuses": [item]})

    def sign(self, body: bytes) -> str:
        return "sha256=" + hmac.new(self.app_secret.encode(), body, hashlib.sha256).hexdigest()

    async def post_webhook(self, envelope: dict[str, Any] | bytes, *, times: int = 1,
                           headers: dict[str, str] | None = None) -> list[httpx.Response]:
        """POST the envelope to our webhook, signed, `times` times at once (as Meta's retries)."""
        assert self.webhook_url and self._http
        body = envelope if isinstance(envelope, bytes) else json.dumps(envelope, ensure_ascii=False).encode()
        sent_headers = {"Content-Type": "application/json", "X-Hub-Signature-256": self.sign(body), **(headers or {})}
        return list(await asyncio.gather(*(self._http.post(self.webhook_url, content=body, headers=sent_headers)
                                           for _ in range(times))))

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for the business to send")
            await asyncio.sleep(0.02)

    # -- the API
    def _auth(self, request: web.Request) -> None:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            raise GraphFault(190, "Invalid OAuth access token - Cannot parse access token", 401)
        if request.match_info["phone"] != self.phone_number_id:
            raise GraphFault(100, f"Unsupported post request. Object with ID '{request.match_info['phone']}' does not exist")

    async def _messages(self, request: web.Request) -> web.Response:
        try:
            self._auth(request)
            try:
                body = await request.json()
            except ValueError:
                raise GraphFault(100, "The request body is not JSON") from None
            if body.get("status") == "read":
                return web.json_response({"success": True})
            to = self._validate(body)
            self._inject(body)
            self._window(to, body)
        except GraphFault as fault:
            self.refused.append((locals().get("body") or {}, fault))
            return web.json_response(fault.payload(), status=fault.http_status)
        sent = Sent(self.new_wamid(), to, body, self.now())
        self.sent.append(sent)
        answer: dict[str, Any] = {"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}],
                                  "messages": [{"id": sent.wamid}]}
        if body["type"] == "template":
            answer["messages"][0]["message_status"] = "accepted"
        return web.json_response(answer)

    def _inject(self, body: dict[str, Any]) -> None:
        for fault in self.faults:
            if fault.times > 0 and fault.match(body):
                fault.times -= 1
                raise GraphFault(fault.code, TITLES.get(fault.code, "Injected error"),
                                 429 if fault.code == 130429 else 400)

    def _window(self, to: str, body: dict[str, Any]) -> None:
        if body["type"] == "template":
            return
        customer = self.customers.get(to)
        last = customer.last_inbound if customer else None
        if last is None or self.now() - last > WINDOW:
            raise GraphFault(131047, "Message failed to send because more than 24 hours have passed since the "
                                     "customer last replied to this number.")

    def _validate(self, body: dict[str, Any]) -> str:
        if body.get("messaging_product") != "whatsapp":
            raise GraphFault(100, "The parameter messaging_product is required.")
        to = body.get("to") or body.get("recipient")
        if not isinstance(to, str) or not to:
            raise GraphFault(100, "The parameter to is required.")
        kind = body.get("type", "text")
        checks = {"text": self._text, "interactive": self._interactive, "document": self._media_message,
                  "image": self._media_message, "template": self._template}
        if kind not in checks or not isinstance(body.get(kind), dict):
            raise invalid(f"Unsupported message type {kind!r}")
        checks[kind](body)
        return to

    @staticmethod
    def _length(value: Any, limit: int, what: str, minimum: int = 1) -> None:
        if not isinstance(value, str) or not minimum <= len(value) <= limit:
            raise invalid(f"{what} must be a string of {minimum} to {limit} characters"
                          + (f" (got {len(value)})" if isinstance(value, str) else ""))

    def _text(self, body: dict[str, Any]) -> None:
        self._length(body["text"].get("body"), 4096, "text.body")

    def _interactive(self, body: dict[str, Any]) -> None:
        interactive = body["interactive"]
        kind = interactive.get("type")
        self._length((interactive.get("body") or {}).get("text"), 1024, "interactive.body.text")
        action = interactive.get("action") or {}
        if kind == "button":
            buttons = action.get("buttons") or []
            if not 1 <= len(buttons) <= 3:
                raise invalid("interactive.action.buttons must have 1 to 3 buttons")
            ids, titles = set(), set()
            for button in buttons:
                reply = button.get("reply") or {}
                if button.get("type") != "reply":
                    raise invalid("button type must be reply")
                self._length(reply.get("id"), 256, "button id")
                self._length(reply.get("title"), 20, "button title")
                if reply["id"] in ids or reply["title"] in titles:
                    raise invalid("Button titles and ids must be unique")
                ids.add(reply["id"])
                titles.add(reply["title"])
        elif kind == "list":
            self._length(action.get("button"), 20, "list button")
            sections = action.get("sections") or []
            if not 1 <= len(sections) <= 10:
                raise invalid("a list has 1 to 10 sections")
            rows = [row for section in sections for row in section.get("rows") or []]
            if not 1 <= len(rows) <= 10:
                raise invalid(f"a list has 1 to 10 rows in all (got {len(rows)})")
            if len(sections) > 1 and not all(s.get("title") for s in sections):
                raise invalid("section titles are required with more than one section")
            ids = set()
            for row in rows:
                self._length(row.get("id"), 200, "row id")
                self._length(row.get("title"), 24, "row title")
                if "description" in row:
                    self._length(row["description"], 72, "row description")
                if row["id"] in ids:
                    raise invalid("Row ids must be unique")
                ids.add(row["id"])
        elif kind == "cta_url":
            parameters = action.get("parameters") or {}
            if action.get("name") != "cta_url":
                raise invalid("action.name must be cta_url")
            self._length(parameters.get("display_text"), 20, "display_text")
            if not re.match(r"https?://\S+$", str(parameters.get("url") or "")):
                raise invalid("url must be an http(s) URL")
        else:
            raise invalid(f"Unsupported interactive type {kind!r}")

    def _media_message(self, body: dict[str, Any]) -> None:
        kind = body["type"]
        item = body[kind]
        if "link" in item:
            return
        media = self.media.get(str(item.get("id")))
        if media is None:
            raise GraphFault(131053, f"Media id {item.get('id')} was not uploaded to this phone number")
        allowed = IMAGE_TYPES if kind == "image" else DOCUMENT_TYPES
        if media.mime_type not in allowed:
            raise invalid(f"{media.mime_type} can't be sent as {kind}")
        if "caption" in item:
            self._length(item["caption"], 1024, "caption")

    def _template(self, body: dict[str, Any]) -> None:
        template = body["template"]
        self._length(template.get("name"), 512, "template.name")
        code = (template.get("language") or {}).get("code")
        if not isinstance(code, str) or not re.fullmatch(r"[a-z]{2}(_[A-Z]{2})?", code):
            raise invalid("template.language.code is required")
        parameters = [p for c in template.get("components") or [] if c.get("type") == "body"
                      for p in c.get("parameters") or []]
        for parameter in parameters:
            text = parameter.get("text", "")
            if "\n" in text or "\t" in text or "     " in text or not text:
                raise GraphFault(132018, "Param text cannot have new-line/tab characters or more than 4 consecutive spaces")
        for component in template.get("components") or []:
            for parameter in component.get("parameters") or []:
                if parameter.get("type") == "document":
                    self._media_message({"type": "document", "document": parameter["document"]})
        if self.templates is not None:
            if template["name"] not in self.templates:
                raise GraphFault(132001, f"Template name does not exist in {code}")
            if self.templates[template["name"]] != len(parameters):
                raise GraphFault(132000, f"expected {self.templates[template['name']]} parameters, got {len(parameters)}")

    async def _upload(self, request: web.Request) -> web.Response:
        try:
            self._auth(request)
            form = await request.post()
            upload = form.get("file")
            mime = str(form.get("type") or "")
            if form.get("messaging_product") != "whatsapp":
                raise GraphFault(100, "The parameter messaging_product is required.")
            if not isinstance(upload, web.FileField):
                raise GraphFault(100, "The parameter file is required.")
            limit = {**IMAGE_TYPES, **DOCUMENT_TYPES}.get(mime)
            content = upload.file.read()
            if limit is None:
                raise GraphFault(131053, f"Unsupported media type {mime!r}")
            if len(content) > limit:
                raise GraphFault(131053, "media too large")
        except GraphFault as fault:
            return web.json_response(fault.payload(), status=fault.http_status)
        media = Media(str(10 ** 15 + next(self._ids)), upload.filename, content, mime)
        self.media[media.media_id] = media
        return web.json_response({"id": media.media_id})
