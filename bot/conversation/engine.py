"""The conversation: one Event in, the replies out. Dedupe, per-chat lock, state, routing.

State per chat lives in the shared StateStore (Redis or memory) under `conv:{channel}:{chat}`;
what it holds is the step of a guided flow and the current list's filters, never a secret or a
card number.
"""
from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Awaitable, Callable

from bot.conversation import callbacks as cb
from bot.conversation import handoff, notifications, payments, reports
from bot.conversation import views
from bot.conversation.events import Event, EventKind
from bot.conversation.replies import Button, DeleteMessage, Document, Reply
from core.billers.base import SECRET_PAYMENT_CODE
from core.billers.catalog import normalize_identifier
from core.billers.registry import BillerRegistry
from core.billers.sandbox.samples import try_these
from core.config import Settings
from core.db import Database
from core.errors import FatouraError, InvalidDate, InvalidInput, TooManyAttempts, UnknownAccount, UnknownTerminal
from core.i18n import LANGUAGES, TIMEZONE, Translator, translator
from core.identifiers import contains_card_number, normalize_invoice_number
from core.models import ChatUser, LinkedAccount
from core.services import invoices as invoice_service
from core.services import linking, users
from core.services.handoff import Desk
from core.state import StateStore

log = logging.getLogger("fatoura.conversation")

STATE_TTL = 30 * 24 * 3600
UPDATE_TTL = 24 * 3600  # platforms retry a delivery for at most a day

Early = Callable[[list[Reply]], Awaitable[Any]]  # a channel's way to send replies before the turn ends


def today_in_morocco() -> date:
    return datetime.now(TIMEZONE).date()


@dataclass
class Turn:
    """Everything one event's handling needs."""

    event: Event
    user: ChatUser
    t: Translator
    state: dict[str, Any]
    new_user: bool = False
    replies: list[Reply] = field(default_factory=list)
    early: Early | None = None

    def say(self, reply: Reply) -> None:
        self.replies.append(reply)

    async def flush(self) -> None:
        """Send what was said so far now, before slow work ("Preparing…" and then the file), where
        the channel can; elsewhere the replies simply go together at the end."""
        if self.early is not None and self.replies:
            replies, self.replies = self.replies, []
            await self.early(replies)


class Conversation:
    def __init__(self, settings: Settings, db: Database, state: StateStore, billers: BillerRegistry,
                 clock: Callable[[], date] = today_in_morocco, gateways: Any = None) -> None:
        from core.payments.registry import GatewayRegistry

        self.settings = settings
        self.gateways = gateways if gateways is not None else GatewayRegistry.from_settings(settings)
        self.db = db
        self.store = state
        self.billers = billers
        self.guard = linking.LinkGuard(state, settings)
        self.today = clock
        self.desk = Desk(db, topics=bool(settings.support_chat_id and settings.telegram_bot_token),
                         minutes_per_customer=settings.support_minutes_per_customer)

    async def handle(self, event: Event, early: Early | None = None) -> list[Reply]:
        """Handle one event; a second delivery of the same update id returns no reply. `early`, when
        the channel gives it, sends replies before the handling ends (see `Turn.flush`)."""
        # Queue on the chat's lock before any other await, so updates keep their arrival order.
        async with self.store.lock(f"chat:{event.channel}:{event.chat_id}"):
            if event.update_id and not await self.store.add_once(
                    f"upd:{event.channel}:{event.chat_id}:{event.update_id}", ttl=UPDATE_TTL):
                return []
            return await self._handle(event, early)

    def _state_key(self, event: Event) -> str:
        return f"conv:{event.channel}:{event.chat_id}"

    async def _handle(self, event: Event, early: Early | None = None) -> list[Reply]:
        user, created = await users.get_or_create_user(self.db, event.channel, event.chat_id, event.language)
        turn = Turn(event, user, translator(user.locale), await self.store.get_json(self._state_key(event)) or {},
                    new_user=created, early=early)
        try:
            typed = " ".join(filter(None, (event.text, event.data))) if event.kind in (EventKind.TEXT, EventKind.COMMAND) else ""
            if typed and contains_card_number(typed):
                await self._card_number(turn)
            else:
                await self._route(turn)
        except FatouraError as error:
            turn.say(views.error(turn.t, turn.t.error(error), [views.menu_button(turn.t)]))
        except Exception:  # noqa: BLE001 - the customer gets an answer; the trace goes to the log, not the text
            log.exception("conversation failed on a %s event", event.kind.value)
            turn.say(views.error(turn.t, turn.t._("Something went wrong on our side. Please try again."),
                                 [views.menu_button(turn.t)]))
            return turn.replies
        if turn.state.get("forgotten"):
            await self.store.delete_prefix(self._state_key(event))
        else:
            await self.store.set_json(self._state_key(event), turn.state, ttl=STATE_TTL)
        return turn.replies

    # --- routing ------------------------------------------------------------------------------

    async def _route(self, turn: Turn) -> None:
        event = turn.event
        if event.kind is EventKind.START:
            await self._start(turn)
        elif event.kind is EventKind.COMMAND:
            await self._command(turn, (event.text or "").lower())
        elif event.kind is EventKind.BUTTON:
            await self._button(turn)
        elif event.kind is EventKind.CONTACT:
            await self._contact(turn)
        elif event.kind is EventKind.TEXT:
            await self._text(turn)
        else:
            turn.say(views.text(turn.t, turn.t._(
                "I can only read text messages and buttons. Use the menu below."), [views.menu_button(turn.t)]))

    async def _links(self, turn: Turn) -> list[LinkedAccount]:
        return await linking.list_links(self.db, turn.user.id)

    async def _menu(self, turn: Turn, intro: str | None = None, replace: bool = False) -> None:
        turn.state.pop("flow", None)
        turn.say(views.menu(turn.t, has_accounts=bool(await self._links(turn)), intro=intro, replace=replace))

    async def _start(self, turn: Turn) -> None:
        name = turn.event.user_name
        greeting = turn.t._("Hello {name}!", name=name) if name else turn.t._("Hello!")
        intro = greeting + " " + turn.t._(
            "I am Fatoura: I show your Maroc Telecom, PortNet, Marsa Maroc and DIAC bills and help you pay them, "
            "right here.")
        await self._menu(turn, intro)

    async def _command(self, turn: Turn, command: str) -> None:
        if command in ("start", "menu"):
            await self._start(turn) if command == "start" else await self._menu(turn)
        elif command == "help":
            turn.say(views.help_text(turn.t))
        elif command in ("language", "langue", "lang"):
            turn.say(views.languages(turn.t))
        elif command in ("link", "lier"):
            await self._link_start(turn)
        elif command in ("invoices", "factures", "unpaid"):
            await self._list(turn, page=1, reset=True)
        elif command in ("accounts", "comptes"):
            turn.say(views.accounts(turn.t, await self._links(turn)))
        elif command in ("payments", "paiements"):
            await payments.payments(self, turn, [])
        elif command in ("reports", "rapports"):
            await reports.menu(self, turn, [])
        elif command in ("notifications", "notify"):
            await notifications.menu(self, turn, [])
        elif command in ("history", "historique"):
            await self._history(turn)
        elif command in ("forget", "oublier"):
            self._forget_ask(turn)
        elif command in ("agent", "conseiller", "support"):
            await handoff.ask(self, turn)
        elif command in ("cancel", "annuler"):
            await self._menu(turn, turn.t._("Cancelled."))
        else:
            turn.say(views.text(turn.t, turn.t._("I don't know this command."), [views.menu_button(turn.t)]))

    async def _button(self, turn: Turn) -> None:
        action, args = cb.unpack(turn.event.data)
        handler = {
            cb.MENU: lambda: self._menu(turn, replace=True),
            cb.CANCEL: lambda: self._menu(turn, turn.t._("Cancelled.")),
            cb.LINK: lambda: self._link_button(turn, args),
            cb.TERMINAL: lambda: self._terminal(turn, args),
            cb.UNPAID: lambda: self._list(turn, page=_int(args, 0), replace=True),
            cb.SCOPE: lambda: self._scope(turn, args),
            cb.FILTERS: lambda: self._filters(turn, args),
            cb.INVOICE: lambda: self._invoice(turn, args),
            cb.PDF: lambda: self._pdf(turn, args),
            cb.HISTORY: lambda: self._history(turn),
            cb.ACCOUNTS: lambda: self._accounts(turn, args),
            cb.RENAME: lambda: self._rename_ask(turn, args),
            cb.UNLINK: lambda: self._unlink_ask(turn, args),
            cb.UNLINK_CONFIRM: lambda: self._unlink(turn, args),
            cb.LANGUAGE: lambda: self._language(turn, args),
            cb.HELP: lambda: _say(turn, views.help_text(turn.t)),
            cb.FORGET: lambda: _sync(self._forget_ask, turn),
            cb.FORGET_CONFIRM: lambda: self._forget(turn, args),
            cb.PAY: lambda: payments.open_selection(self, turn, args),
            cb.PAY_TOGGLE: lambda: payments.toggle(self, turn, args),
            cb.PAY_ALL: lambda: payments.select_all(self, turn),
            cb.PAY_NEXT: lambda: payments.summary(self, turn),
            cb.PAY_CHANNEL: lambda: payments.pay(self, turn, args[0] if args else ""),
            cb.PAYMENTS: lambda: payments.payments(self, turn, args),
            cb.PAYMENT_CANCEL: lambda: payments.cancel(self, turn, args),
            cb.RECEIPT: lambda: payments.receipt(self, turn, args),
            cb.REPORTS: lambda: reports.menu(self, turn, args),
            cb.CHART: lambda: reports.chart(self, turn, args),
            cb.EXPORT: lambda: reports.export(self, turn, args),
            cb.ARCHIVE: lambda: reports.archive(self, turn, args),
            cb.RETRY_SAME: lambda: payments.retry(self, turn, args, same_channel=True),
            cb.RETRY_OTHER: lambda: payments.retry(self, turn, args, same_channel=False),
            cb.HANDOFF: lambda: handoff.ask(self, turn),
            cb.HANDOFF_SKIP: lambda: handoff.queue(self, turn, None),
            cb.HANDOFF_CANCEL: lambda: handoff.cancel(self, turn),
            cb.RATE: lambda: handoff.rate(self, turn, args),
            cb.NOTIFY: lambda: notifications.menu(self, turn, args),
        }.get(action)
        if handler is None:
            await self._stale(turn)
        else:
            await handler()

    async def _stale(self, turn: Turn) -> None:
        await self._menu(turn, turn.t._("This button belongs to an older message and no longer applies."))

    async def _text(self, turn: Turn) -> None:
        flow = turn.state.get("flow")
        raw = (turn.event.text or "").strip()
        if flow == "link":
            await self._link_text(turn, raw)
        elif flow == "rename":
            await self._rename(turn, raw)
        elif flow == "filter_number":
            await self._filter_number(turn, raw)
        elif flow == "filter_dates":
            await self._filter_dates(turn, raw)
        elif flow == "handoff_reason":
            await handoff.queue(self, turn, raw)
        elif (ticket := await self.desk.live_ticket(turn.user.id)) is not None:
            await handoff.relay(self, turn, ticket, raw)
        else:
            turn.say(views.text(turn.t, turn.t._(
                "I did not understand. Please use the buttons below, or /help."), [views.menu_button(turn.t)]))

    async def _contact(self, turn: Turn) -> None:
        link = turn.state.get("link") or {}
        if turn.state.get("flow") == "link" and link.get("step") == "identifier" and link.get("kind") == "phone":
            await self._link_text(turn, turn.event.text or "")
        else:
            turn.say(views.text(turn.t, turn.t._(
                "Thank you. To link this line, choose “Link an account”."), [views.menu_button(turn.t)]))

    async def _card_number(self, turn: Turn) -> None:
        if turn.event.message_id:
            turn.say(DeleteMessage(turn.event.message_id))
        turn.say(views.text(turn.t, turn.t._(
            "Your message looked like a card number, so I deleted it and kept nothing. Fatoura never asks for card "
            "details in the chat: card payments happen on the bank's secure page."), [views.menu_button(turn.t)]))

    # --- linking --------------------------------------------------------------------------------

    async def _link_start(self, turn: Turn) -> None:
        turn.state["flow"] = "link"
        turn.state["link"] = {}
        rows = [[Button(info.name, cb.pack(cb.LINK, info.code))] for info in self.billers.infos()]
        turn.say(views.text(turn.t, turn.t._("Which biller?"), *rows, [Button(turn.t._("Cancel"), cb.pack(cb.CANCEL))]))

    async def _link_button(self, turn: Turn, args: list[str]) -> None:
        if not args:
            return await self._link_start(turn)
        if args[0] not in self.billers:
            return await self._stale(turn)
        info = self.billers.get(args[0]).info
        if len(args) == 1 and len(info.services) > 1:
            turn.state.update(flow="link", link={"biller": info.code})
            rows = [[Button(views.service_label(turn.t, s.code), cb.pack(cb.LINK, info.code, s.code))] for s in info.services]
            turn.say(views.text(turn.t, turn.t._("{biller}: which service?", biller=info.name), *rows,
                                [Button(turn.t._("Cancel"), cb.pack(cb.CANCEL))], replace=True))
            return
        service_code = args[1] if len(args) > 1 else info.services[0].code
        if service_code not in {s.code for s in info.services}:
            return await self._stale(turn)
        service = info.service(service_code)
        turn.state.update(flow="link", link={"biller": info.code, "service": service.code, "kind": service.identifier})
        if service.needs_terminal:
            turn.state["link"]["step"] = "terminal"
            rows = [[Button(name, cb.pack(cb.TERMINAL, i))] for i, name in enumerate(info.terminals)]
            turn.say(views.text(turn.t, turn.t._("Which terminal?"), *rows, [Button(turn.t._("Cancel"), cb.pack(cb.CANCEL))]))
            return
        self._ask_identifier(turn)

    async def _terminal(self, turn: Turn, args: list[str]) -> None:
        link = turn.state.get("link") or {}
        if turn.state.get("flow") != "link" or link.get("step") != "terminal":
            return await self._stale(turn)
        info = self.billers.get(link["biller"]).info
        index = _int(args, -1)
        if not 0 <= index < len(info.terminals):
            raise UnknownTerminal()
        link["terminal"] = info.terminals[index]
        self._ask_identifier(turn)

    def _hint(self, link: dict[str, Any]) -> str | None:
        if not self.settings.sandbox:
            return None
        for sample in try_these():
            if sample["biller"] == link["biller"] and sample["service"] == link["service"]:
                return sample["identifier"] if not sample["secret"] else f"{sample['identifier']} + {sample['secret']}"
        return None

    def _ask_identifier(self, turn: Turn) -> None:
        t, link = turn.t, turn.state["link"]
        link["step"] = "identifier"
        kind = link["kind"]
        buttons: list[list[Button]] = []
        if kind == "phone":
            prompt = t._("Send the phone number of the line (e.g. 0612345678), or its customer number (N° client).")
            if turn.event.channel == "telegram":
                buttons.append([Button(t._("Share my number"), request_contact=True)])
        elif kind == "customer_number":
            prompt = t._("Send the customer number (N° client) printed at the top of your invoice.")
        elif kind == "subscription_code":
            prompt = t._("Send your 4-character PortNet subscription code.")
        else:
            prompt = t._("Send your Marsa Maroc identifier.")
        hint = self._hint(link)
        if hint:
            prompt += "\n\n" + t._("Demo: try {sample}", sample=hint)
        buttons.append([Button(t._("Cancel"), cb.pack(cb.CANCEL))])
        turn.say(views.text(t, prompt, *buttons))

    async def _link_text(self, turn: Turn, raw: str) -> None:
        link = turn.state.get("link") or {}
        step = link.get("step")
        if step not in ("identifier", "secret"):
            turn.say(views.text(turn.t, turn.t._("Please choose with the buttons above."),
                                [Button(turn.t._("Cancel"), cb.pack(cb.CANCEL))]))
            return
        connector = self.billers.get(link["biller"])
        service = connector.info.service(link["service"])
        if step == "identifier":
            try:
                link["identifier"] = normalize_identifier(connector.info, service.code, raw)
            except InvalidInput as error:
                turn.say(views.error(turn.t, turn.t.error(error), [Button(turn.t._("Cancel"), cb.pack(cb.CANCEL))]))
                return
            if service.secret is not None:
                link["step"] = "secret"
                if service.secret == SECRET_PAYMENT_CODE:
                    prompt = turn.t._("Now send the payment code (“Code de paiement”) printed on the first page of "
                                      "your invoice, 5th line on the left.")
                else:
                    prompt = turn.t._("Now send the e-mail address registered with this customer number.")
                turn.say(views.text(turn.t, prompt, [Button(turn.t._("Cancel"), cb.pack(cb.CANCEL))]))
                return
            secret = None
        else:
            secret = raw
        await self._link_lookup(turn, link, secret)

    async def _link_lookup(self, turn: Turn, link: dict[str, Any], secret: str | None) -> None:
        t = turn.t
        cancel = [Button(t._("Cancel"), cb.pack(cb.CANCEL))]
        try:
            account = await linking.find_account(self.billers, self.guard, f"{turn.event.channel}:{turn.event.chat_id}",
                                                 link["biller"], link["service"], link["identifier"], secret,
                                                 link.get("terminal"))
        except TooManyAttempts as error:
            turn.state.pop("flow", None)
            turn.say(views.error(t, t.error(error), [views.menu_button(t)]))
            return
        except UnknownAccount as error:
            link["step"] = "identifier"
            turn.say(views.error(t, t.error(error) + "\n" + t._("Check it and send it again."), cancel))
            return
        except InvalidInput as error:  # a malformed secret: ask it again
            turn.say(views.error(t, t.error(error), cancel))
            return
        except FatouraError as error:  # wrong payment code or e-mail: say what to look for, ask again
            turn.say(views.error(t, t.error(error), cancel))
            return
        result = await linking.save_link(self.db, turn.user.id, account)
        turn.state.pop("flow", None)
        turn.state.pop("link", None)
        saved = result.account
        if result.created:
            head = t._("Account linked: {name}", name=views.account_name(t, saved))
        else:
            head = t._("This account is already linked: {name}", name=views.account_name(t, saved))
        if account.holder_name:
            head += "\n" + t._("Holder: {name}", name=account.holder_name)
        page = await invoice_service.list_invoices(self.billers, [saved], invoice_service.Filters())
        if page.total:
            head += "\n" + t.ngettext("{n} unpaid invoice, total {total}", "{n} unpaid invoices, total {total}",
                                      page.total, total=t.amount(page.total_ttc))
        else:
            head += "\n" + t._("You have no unpaid invoice.")
        turn.state["list"] = {"scope": saved.id, "filters": {}}
        turn.say(views.text(t, head,
                            [Button(t._("See the invoices"), cb.pack(cb.SCOPE, saved.id))]
                            + ([Button(t._("Pay"), cb.pack(cb.PAY, saved.id))] if page.total else []),
                            [Button(t._("Rename"), cb.pack(cb.RENAME, saved.id)), views.menu_button(t)]))

    # --- invoices -------------------------------------------------------------------------------

    def _filters_of(self, turn: Turn) -> invoice_service.Filters:
        raw = (turn.state.get("list") or {}).get("filters") or {}
        return invoice_service.Filters(
            status=raw.get("status", "unpaid") if raw.get("status", "unpaid") != "all" else None,
            issuer=raw.get("issuer"), number=raw.get("number"),
            date_from=date.fromisoformat(raw["date_from"]) if raw.get("date_from") else None,
            date_to=date.fromisoformat(raw["date_to"]) if raw.get("date_to") else None,
        )

    async def _scoped_links(self, turn: Turn) -> list[LinkedAccount]:
        links = await self._links(turn)
        scope = (turn.state.get("list") or {}).get("scope")
        if scope:
            scoped = [link for link in links if link.id == scope]
            if scoped:
                return scoped
            turn.state["list"]["scope"] = 0
        return links

    async def _list(self, turn: Turn, page: int, reset: bool = False, replace: bool = False) -> None:
        turn.state.pop("flow", None)
        if reset or "list" not in turn.state:
            turn.state["list"] = {"scope": 0, "filters": {}}
        page = page or turn.state["list"].get("page", 1)
        links = await self._scoped_links(turn)
        if not links:
            return await self._menu(turn)
        filters = self._filters_of(turn)
        listed = await invoice_service.list_invoices(self.billers, links, filters, page=page)
        turn.state["list"]["page"] = listed.page
        turn.state["list"]["issuers"] = list(listed.issuers)[:12]
        pay_link = links[0].id if len(links) == 1 and filters.status == "unpaid" and listed.total else None
        turn.say(views.invoice_list(turn.t, listed, filters, self.today(), many_accounts=len(links) > 1,
                                    replace=replace, pay_link=pay_link))

    async def _scope(self, turn: Turn, args: list[str]) -> None:
        link_id = _int(args, 0)
        if link_id and not await linking.get_link(self.db, turn.user.id, link_id):
            return await self._stale(turn)
        turn.state["list"] = {"scope": link_id, "filters": {}}
        await self._list(turn, page=1)

    async def _filters(self, turn: Turn, args: list[str]) -> None:
        t = turn.t
        listing = turn.state.setdefault("list", {"scope": 0, "filters": {}})
        filters = listing.setdefault("filters", {})
        kind = args[0] if args else ""
        value = "|".join(args[1:]) if len(args) > 1 else None
        if kind == "x":
            listing["filters"] = {}
            return await self._list(turn, page=1)
        if kind == "i" and value is not None:
            filters["issuer"] = value
            return await self._list(turn, page=1)
        if kind == "s" and value in ("unpaid", "paid", "all"):
            filters["status"] = value
            return await self._list(turn, page=1)
        cancel = [Button(t._("Back to the list"), cb.pack(cb.UNPAID, 0))]
        if kind == "i":
            issuers = listing.get("issuers") or []
            rows = [[Button(name, cb.pack(cb.FILTERS, "i", name))] for name in issuers]
            turn.say(views.text(t, t._("Which issuer?"), *rows, cancel))
        elif kind == "s":
            turn.say(views.text(t, t._("Which invoices?"), [
                Button(t._("Unpaid"), cb.pack(cb.FILTERS, "s", "unpaid")),
                Button(t._("Paid"), cb.pack(cb.FILTERS, "s", "paid")),
                Button(t._("All"), cb.pack(cb.FILTERS, "s", "all"))], cancel))
        elif kind == "n":
            turn.state["flow"] = "filter_number"
            turn.say(views.text(t, t._("Send the invoice number."), cancel))
        elif kind == "d":
            turn.state["flow"] = "filter_dates"
            turn.say(views.text(t, t._("Send the date range, e.g. 01/01/2017 - 31/12/2017."), cancel))
        else:
            described = views.describe_filters(t, self._filters_of(turn))
            body = t._("Filter the invoices (up to 4 filters at once).")
            if described:
                body += "\n" + t._("Filters: {filters}", filters=described)
            turn.say(views.text(t, body,
                                [Button(t._("Issuer"), cb.pack(cb.FILTERS, "i")),
                                 Button(t._("Invoice number"), cb.pack(cb.FILTERS, "n"))],
                                [Button(t._("Dates"), cb.pack(cb.FILTERS, "d")),
                                 Button(t._("Status"), cb.pack(cb.FILTERS, "s"))],
                                [Button(t._("Clear the filters"), cb.pack(cb.FILTERS, "x"))], cancel, replace=True))

    async def _filter_number(self, turn: Turn, raw: str) -> None:
        try:
            number = normalize_invoice_number(raw)
        except FatouraError as error:
            turn.say(views.error(turn.t, turn.t.error(error), [Button(turn.t._("Back to the list"), cb.pack(cb.UNPAID, 0))]))
            return
        turn.state.setdefault("list", {"scope": 0, "filters": {}})["filters"].update(number=number, status="all")
        await self._list(turn, page=1)

    async def _filter_dates(self, turn: Turn, raw: str) -> None:
        try:
            start, end = parse_date_range(raw)
        except InvalidDate as error:
            turn.say(views.error(turn.t, turn.t.error(error), [Button(turn.t._("Back to the list"), cb.pack(cb.UNPAID, 0))]))
            return
        turn.state.setdefault("list", {"scope": 0, "filters": {}})["filters"].update(
            date_from=start.isoformat(), date_to=end.isoformat())
        await self._list(turn, page=1)

    async def _link_of(self, turn: Turn, args: list[str]) -> LinkedAccount | None:
        return await linking.get_link(self.db, turn.user.id, _int(args, 0))

    async def _invoice(self, turn: Turn, args: list[str]) -> None:
        link = await self._link_of(turn, args)
        if link is None or len(args) < 2:
            return await self._stale(turn)
        invoice = await invoice_service.get_invoice(self.billers, link, args[1])
        turn.say(views.invoice_detail(turn.t, link, invoice, self.today()))

    async def _pdf(self, turn: Turn, args: list[str]) -> None:
        link = await self._link_of(turn, args)
        if link is None or len(args) < 2:
            return await self._stale(turn)
        content = await invoice_service.invoice_pdf(self.billers, link, args[1], turn.t.language)
        turn.say(Document(filename=f"facture-{args[1]}.pdf", content=content,
                          caption=turn.t._("Invoice No. {number}", number=args[1])))

    async def _history(self, turn: Turn) -> None:
        links = await self._links(turn)
        if not links:
            return await self._menu(turn)
        turn.say(views.history(turn.t, await invoice_service.history(self.billers, links)))

    # --- accounts -------------------------------------------------------------------------------

    async def _accounts(self, turn: Turn, args: list[str]) -> None:
        if not args:
            turn.say(views.accounts(turn.t, await self._links(turn)))
            return
        link = await self._link_of(turn, args)
        if link is None:
            return await self._stale(turn)
        name = self.billers.get(link.biller).info.name if link.biller in self.billers else link.biller
        turn.say(views.account(turn.t, link, name))

    async def _rename_ask(self, turn: Turn, args: list[str]) -> None:
        link = await self._link_of(turn, args)
        if link is None:
            return await self._stale(turn)
        turn.state.update(flow="rename", rename=link.id)
        turn.say(views.text(turn.t, turn.t._("Send the new name for {name}.", name=views.account_name(turn.t, link)),
                            [Button(turn.t._("Cancel"), cb.pack(cb.CANCEL))]))

    async def _rename(self, turn: Turn, raw: str) -> None:
        link = await linking.rename_link(self.db, turn.user.id, int(turn.state.get("rename") or 0), raw)
        turn.state.pop("flow", None)
        turn.state.pop("rename", None)
        if link is None:
            return await self._stale(turn)
        await self._menu(turn, turn.t._("Renamed: {name}", name=link.nickname))

    async def _unlink_ask(self, turn: Turn, args: list[str]) -> None:
        link = await self._link_of(turn, args)
        if link is None:
            return await self._stale(turn)
        nonce = turn.state["nonce"] = secrets.token_hex(4)
        turn.say(views.text(turn.t, turn.t._("Unlink {name}? Its invoices will no longer show here.",
                                             name=views.account_name(turn.t, link)),
                            [Button(turn.t._("Yes, unlink"), cb.pack(cb.UNLINK_CONFIRM, link.id, nonce)),
                             Button(turn.t._("Cancel"), cb.pack(cb.CANCEL))], replace=True))

    async def _unlink(self, turn: Turn, args: list[str]) -> None:
        if len(args) < 2 or not turn.state.get("nonce") or args[1] != turn.state.get("nonce"):
            return await self._stale(turn)
        turn.state.pop("nonce", None)
        if not await linking.unlink(self.db, turn.user.id, _int(args, 0)):
            return await self._stale(turn)
        turn.state.pop("list", None)
        await self._menu(turn, turn.t._("The account is unlinked."), replace=True)

    # --- language, privacy ---------------------------------------------------------------------

    async def _language(self, turn: Turn, args: list[str]) -> None:
        if not args:
            turn.say(views.languages(turn.t))
            return
        if args[0] not in LANGUAGES:
            return await self._stale(turn)
        await users.set_language(self.db, turn.user.id, args[0])
        turn.t = translator(args[0])
        await self._menu(turn, turn.t._("Language changed."), replace=True)

    def _forget_ask(self, turn: Turn) -> None:
        nonce = turn.state["nonce"] = secrets.token_hex(4)
        turn.say(views.text(turn.t, turn.t._(
            "This deletes everything Fatoura stores about this chat: your linked accounts, your language and the "
            "conversation. Payment records are kept for accounting, without your chat. Continue?"),
            [Button(turn.t._("Yes, delete everything"), cb.pack(cb.FORGET_CONFIRM, nonce)),
             Button(turn.t._("Cancel"), cb.pack(cb.CANCEL))]))

    async def _forget(self, turn: Turn, args: list[str]) -> None:
        if not args or args[0] != turn.state.get("nonce"):
            return await self._stale(turn)
        forgotten = await users.forget_user(self.db, turn.user.id)
        turn.state = {"forgotten": True}
        t = turn.t
        lines = [t._("Done. I deleted:"),
                 t.ngettext("{n} linked account", "{n} linked accounts", forgotten.accounts),
                 t.ngettext("{n} support conversation", "{n} support conversations", forgotten.tickets),
                 t.ngettext("{n} pending message", "{n} pending messages", forgotten.messages),
                 t._("your language and the conversation state."),
                 "", t._("Send /start to begin again.")]
        turn.say(views.text(t, "\n".join(lines)))


def parse_date_range(raw: str) -> tuple[date, date]:
    """'01/01/2017 - 31/12/2017' (or one date) -> (start, end)."""
    parts = [p.strip() for p in raw.replace("–", "-").replace(" au ", "-").replace(" to ", "-").split(" - ")]
    if len(parts) == 1:
        parts = [p.strip() for p in parts[0].split("-")] if parts[0].count("-") == 1 else parts
    try:
        dates = [datetime.strptime(p, "%d/%m/%Y").date() for p in parts if p]
    except ValueError:
        raise InvalidDate(f"bad date range {raw!r}") from None
    if len(dates) == 1:
        dates = dates * 2
    if len(dates) != 2 or dates[0] > dates[1]:
        raise InvalidDate(f"bad date range {raw!r}")
    return dates[0], dates[1]


def _int(args: list[str], default: int) -> int:
    try:
        return int(args[0]) if args else default
    except ValueError:
        return -1


async def _say(turn: Turn, reply: Reply) -> None:
    turn.say(reply)


async def _sync(fn: Callable[[Turn], None], turn: Turn) -> None:
    fn(turn)


def build_conversation(settings: Settings, db: Database | None = None, state: StateStore | None = None,
                       billers: BillerRegistry | None = None, gateways: Any = None) -> Conversation:
    """The conversation with this deployment's database, shared state and billers."""
    from core.state import make_state

    db = db or Database(settings.database_url)
    return Conversation(settings, db, state or make_state(settings.redis_url),
                        billers or BillerRegistry.from_settings(settings, db), gateways=gateways)
