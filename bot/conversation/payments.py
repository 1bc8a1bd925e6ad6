"""Paying from the chat: select invoices (one issuer), see the totals, pick a channel, get the
card link / Fatourati reference / Tashilat code; "my payments" with what is pending.

As on the Maroc Telecom portal every unpaid invoice of the account starts selected and can be
unticked; as on PortNet one payment holds one issuer's invoices only.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bot.conversation import callbacks as cb
from bot.conversation import views
from bot.conversation.replies import Button, Image
from core.errors import N_, AlreadyCovered, MixedIssuers
from core.money import Totals
from core.payments.base import CHANNEL_CARD, CHANNEL_FATOURATI, CHANNEL_TASHILAT, Instruction
from core.services import checkout as checkout_service

if TYPE_CHECKING:
    from bot.conversation.engine import Conversation, Turn

CHANNEL_LABELS = {
    CHANNEL_CARD: N_("Card (CMI)"),
    CHANNEL_FATOURATI: N_("Fatourati reference"),
    CHANNEL_TASHILAT: N_("Tashilat cash code (Amanpay)"),
}
STATE_LABELS = {
    "pending": N_("pending"),
    "paid": N_("paid"),
    "declined": N_("declined"),
    "expired": N_("expired"),
    "cancelled": N_("cancelled"),
    "review": N_("being checked"),
}
LINK_LABELS = {"card": N_("Pay by card (Amanpay)"), "paydirect": N_("PayDirect"), "amanty": N_("Amanty")}


def _selected(turn: "Turn") -> dict[str, Any]:
    return turn.state.get("pay") or {}


async def open_selection(conv: "Conversation", turn: "Turn", args: list[str]) -> None:
    link_id = cb_int(args, 0)
    selectable = await checkout_service.selectable(conv.db, conv.billers, turn.user.id, link_id)
    groups = [g for g in selectable.groups if g.invoices or g.covered]
    if not groups:
        turn.say(views.text(turn.t, turn.t._("You have no unpaid invoice."), [views.menu_button(turn.t)]))
        return
    # "$|<link>|#<number>" (a new-invoice message): the issuer of that invoice, in a new message.
    wanted = args[1][1:] if len(args) > 1 and args[1].startswith("#") else None
    if wanted is not None:
        index = next((i for i, g in enumerate(groups) if any(inv.number == wanted for inv in g.invoices)), 0)
    else:
        index = cb_int(args[1:], 0) if len(args) > 1 else 0
    group = groups[min(max(index, 0), len(groups) - 1)]
    turn.state["pay"] = {"link": link_id, "issuer": group.issuer, "selected": list(group.selected_ids)}
    await show_selection(conv, turn, replace=len(args) > 1 and wanted is None)


async def show_selection(conv: "Conversation", turn: "Turn", replace: bool = True) -> None:
    t, pay = turn.t, _selected(turn)
    selectable = await checkout_service.selectable(conv.db, conv.billers, turn.user.id, int(pay["link"]))
    group = selectable.group(pay["issuer"])
    if group is None or not (group.invoices or group.covered):
        turn.state.pop("pay", None)
        turn.say(views.text(t, t._("You have no unpaid invoice."), [views.menu_button(t)]))
        return
    selected = set(pay["selected"]) & set(group.selected_ids)
    pay["selected"] = sorted(selected)
    chosen = [i for i in group.invoices if i.id in selected]
    lines = [t._("Pay {issuer}: all unpaid invoices are selected; untick those to pay later.", issuer=group.issuer)]
    buttons = []
    for n, invoice in enumerate(group.invoices, 1):
        mark = "✅" if invoice.id in selected else "⬜"
        lines.append(f"{mark} " + t._("{index}. No. {number} · due {date} · {amount}", index=n, number=invoice.number,
                                      date=t.date(invoice.due_date), amount=t.amount(invoice.amount_ttc)))
        buttons.append(Button(f"{mark} {n}. {invoice.number}", cb.pack(cb.PAY_TOGGLE, invoice.id)))
    for invoice in group.covered:
        lines.append("⏳ " + t._("No. {number}: a payment is in progress", number=invoice.number))
    totals = Totals.of(chosen)
    lines.append("")
    lines.append(t.ngettext("{n} invoice selected, total {total}", "{n} invoices selected, total {total}",
                            len(chosen), total=t.amount(totals.ttc)))
    rows = [buttons[i:i + 2] for i in range(0, len(buttons), 2)]
    others = [g for g in selectable.groups if g.issuer != group.issuer and g.invoices]
    if others:
        lines.append(t._("One payment holds the invoices of one issuer. Other issuers of this account:"))
        rows += [[Button(g.issuer, cb.pack(cb.PAY, pay["link"], selectable.groups.index(g)))] for g in others]
    actions = [Button(t._("Continue"), cb.pack(cb.PAY_NEXT))] if chosen else [Button(t._("Select all"), cb.pack(cb.PAY_ALL))]
    rows.append(actions + [views.menu_button(t)])
    turn.say(views.text(t, "\n".join(lines), *rows, replace=replace))


async def toggle(conv: "Conversation", turn: "Turn", args: list[str]) -> None:
    pay = _selected(turn)
    invoice_id = cb_int(args, 0)
    if not pay:
        return await conv._stale(turn)
    selected = set(pay.get("selected") or [])
    selected ^= {invoice_id}
    pay["selected"] = sorted(selected)
    await show_selection(conv, turn)


async def select_all(conv: "Conversation", turn: "Turn") -> None:
    pay = _selected(turn)
    if not pay:
        return await conv._stale(turn)
    selectable = await checkout_service.selectable(conv.db, conv.billers, turn.user.id, int(pay["link"]))
    group = selectable.group(pay["issuer"])
    pay["selected"] = list(group.selected_ids) if group else []
    await show_selection(conv, turn)


async def summary(conv: "Conversation", turn: "Turn") -> None:
    t, pay = turn.t, _selected(turn)
    if not pay or not pay.get("selected"):
        return await conv._stale(turn)
    selectable = await checkout_service.selectable(conv.db, conv.billers, turn.user.id, int(pay["link"]))
    group = selectable.group(pay["issuer"])
    chosen = [i for i in (group.invoices if group else ()) if i.id in set(pay["selected"])]
    if not chosen:
        return await show_selection(conv, turn)
    totals = Totals.of(chosen)
    lines = [t._("Payment to {issuer}", issuer=pay["issuer"])]
    lines += ["• " + t._("No. {number} · {amount}", number=i.number, amount=t.amount(i.amount_ttc)) for i in chosen]
    lines += ["", t._("Amount excl. tax (HT): {amount}", amount=t.amount(totals.ht)),
              t._("VAT (TVA): {amount}", amount=t.amount(totals.tva)),
              t._("Total incl. tax (TTC): {amount}", amount=t.amount(totals.ttc))]
    channels = checkout_service.allowed_channels(chosen)
    rows = []
    if channels:
        lines += ["", t._("How do you want to pay?")]
        rows = [[Button(t._(CHANNEL_LABELS[c]), cb.pack(cb.PAY_CHANNEL, c))] for c in channels if c in CHANNEL_LABELS]
    else:
        means = sorted({m for i in chosen for m in (i.payment_means or [])})
        lines += ["", t._("These invoices can only be paid outside the chat: {means}.",
                          means=", ".join(t._(views.PAYMENT_MEANS.get(m, m)) for m in means))]
    rows.append([Button(t._("Back"), cb.pack(cb.PAY, pay["link"])), views.menu_button(t)])
    turn.say(views.text(t, "\n".join(lines), *rows, replace=True))


async def pay(conv: "Conversation", turn: "Turn", channel: str) -> None:
    t, pay_state = turn.t, _selected(turn)
    if not pay_state or not pay_state.get("selected") or channel not in CHANNEL_LABELS:
        return await conv._stale(turn)
    try:
        checkout, instruction = await checkout_service.create_checkout(
            conv.db, turn.user, pay_state["selected"], channel, conv.gateways, conv.settings,
            billers=conv.billers, link_id=int(pay_state["link"]))
    except AlreadyCovered as error:
        covering = error.checkout
        turn.say(views.error(t, t.error(error),
                             [Button(t._("Show that payment"), cb.pack(cb.PAYMENTS, covering.id)),
                              Button(t._("Cancel that payment"), cb.pack(cb.PAYMENT_CANCEL, covering.id))],
                             [views.menu_button(t)]))
        return
    except MixedIssuers as error:
        turn.say(views.error(t, t.error(error), [Button(t._("Back"), cb.pack(cb.PAY, pay_state["link"]))]))
        return
    turn.state.pop("pay", None)
    say_instruction(turn, instruction, checkout.amount_ttc, checkout.issuer)


def say_instruction(turn: "Turn", instruction: Instruction, amount, issuer: str) -> None:  # noqa: ANN001
    t = turn.t
    lines: list[str] = []
    rows: list[list[Button]] = []
    if instruction.channel == CHANNEL_CARD:
        lines.append(t._("Pay {amount} to {issuer} by card on the bank's secure page (CMI 3-D Secure).",
                         amount=t.amount(amount), issuer=issuer))
        if instruction.expires_at:
            lines.append(t._("The link is valid until {time}.", time=t.datetime(instruction.expires_at)))
        lines.append(t._("Fatoura never sees your card: you type it on the bank's page only."))
        if instruction.url:
            rows.append([Button(t._("Pay {amount} by card", amount=t.amount(amount)), url=instruction.url)])
    else:
        shown = instruction.display_reference or instruction.reference or ""
        if instruction.channel == CHANNEL_FATOURATI:
            lines.append(t._("Your Fatourati reference: {reference}", reference=shown))
        else:
            lines.append(t._("Your Tashilat payment code: {code}", code=shown))
        lines.append(t._("Amount to pay: {amount} ({issuer})", amount=t.amount(amount), issuer=issuer))
        if instruction.expires_at:
            lines.append(t._("Valid until {time}.", time=t.datetime(instruction.expires_at)))
        if instruction.where_to_pay:
            lines.append(t._("Where to pay: {places}", places=", ".join(instruction.where_to_pay)))
        for label, url in instruction.links:
            rows.append([Button(t._(LINK_LABELS.get(label, label)), url=url)])
        lines.append(t._("The confirmation and your receipt will arrive in this chat."))
    if instruction.sandbox:
        lines.append(t._("Test payment (sandbox): no real money moves."))
    rows.append([Button(t._("My payments"), cb.pack(cb.PAYMENTS)), views.menu_button(t)])
    turn.say(views.text(t, "\n".join(lines), *rows))
    if instruction.qr_png:
        turn.say(Image(instruction.qr_png, filename="qr.png", caption=instruction.display_reference or instruction.reference))


async def payments(conv: "Conversation", turn: "Turn", args: list[str]) -> None:
    t = turn.t
    if args:
        checkout, instruction = await checkout_service.show_checkout(conv.db, turn.user.id, cb_int(args, 0),
                                                                     conv.gateways, conv.settings)
        if instruction is None:
            turn.say(views.text(t, t._("This payment is {state}.", state=t._(STATE_LABELS.get(
                checkout_service.state_of(checkout, checkout_service.utcnow()), "expired"))),
                [Button(t._("My payments"), cb.pack(cb.PAYMENTS)), views.menu_button(t)]))
            return
        if instruction.qr_png is None and instruction.reference:
            from dataclasses import replace

            from core.payments.common import qr_png

            instruction = replace(instruction, qr_png=qr_png(instruction.reference))
        say_instruction(turn, instruction, checkout.amount_ttc, checkout.issuer)
        return
    rows_ = await checkout_service.list_checkouts(conv.db, turn.user.id)
    if not rows_:
        turn.say(views.text(t, t._("You have no payment yet."), [views.menu_button(t)]))
        return
    lines = [t._("Your payments:")]
    rows: list[list[Button]] = []
    for n, item in enumerate(rows_[:10], 1):
        line = t._("{index}. {issuer} · {amount} · {state}", index=n, issuer=item.issuer, amount=t.amount(item.amount_ttc),
                   state=t._(STATE_LABELS.get(item.state, item.state)))
        if item.state == "pending" and item.reference:
            line += "\n   " + t._("Reference {reference}", reference=checkout_service.format_tashilat(item.reference)
                                   if item.channel == CHANNEL_TASHILAT else item.reference)
        if item.state == "pending" and item.expires_at:
            line += "\n   " + t._("Valid until {time}.", time=t.datetime(item.expires_at))
        if item.transaction_id:
            line += "\n   " + t._("Transaction {id}", id=item.transaction_id)
        lines.append(line)
        if item.state == "pending":
            rows.append([Button(t._("Show {index}", index=n), cb.pack(cb.PAYMENTS, item.id)),
                         Button(t._("Cancel {index}", index=n), cb.pack(cb.PAYMENT_CANCEL, item.id))])
        elif item.state == "paid" and item.payment_id:
            rows.append([Button(t._("Receipt {index}", index=n), cb.pack(cb.RECEIPT, item.id))])
    rows.append([views.menu_button(t)])
    turn.say(views.text(t, "\n".join(lines), *rows))


async def cancel(conv: "Conversation", turn: "Turn", args: list[str]) -> None:
    await checkout_service.cancel_checkout(conv.db, turn.user.id, cb_int(args, 0))
    turn.say(views.text(turn.t, turn.t._("The payment is cancelled; its invoices can be paid again."),
                        [Button(turn.t._("My payments"), cb.pack(cb.PAYMENTS)), views.menu_button(turn.t)]))


async def retry(conv: "Conversation", turn: "Turn", args: list[str], same_channel: bool) -> None:
    """From a declined card payment: the same invoices again, same channel or a choice of channels."""
    checkout, invoices = await checkout_service.get_checkout(conv.db, turn.user.id, cb_int(args, 0))
    link = await _link_of_invoices(conv, turn, invoices)
    if link is None:
        return await conv._stale(turn)
    turn.state["pay"] = {"link": link, "issuer": checkout.issuer, "selected": [i.id for i in invoices]}
    if same_channel and checkout.channel:
        await pay(conv, turn, checkout.channel)
    else:
        await summary(conv, turn)


async def receipt(conv: "Conversation", turn: "Turn", args: list[str]) -> None:
    from bot.conversation.outbox_replies import receipt_document

    checkout, _ = await checkout_service.get_checkout(conv.db, turn.user.id, cb_int(args, 0))
    document = await receipt_document(conv.db, checkout.id, turn.t.language)
    if document is None:
        return await conv._stale(turn)
    turn.say(document)


async def _link_of_invoices(conv: "Conversation", turn: "Turn", invoices) -> int | None:  # noqa: ANN001
    from core.services.linking import list_links

    refs = {(i.biller, i.account_ref) for i in invoices}
    for link in await list_links(conv.db, turn.user.id):
        if (link.biller, link.account_ref) in refs:
            return link.id
    return None


def cb_int(args: list[str], default: int) -> int:
    try:
        return int(args[0]) if args else default
    except ValueError:
        return -1


def pay_button(t, link_id: int) -> Button:  # noqa: ANN001
    return Button(t._("Pay"), cb.pack(cb.PAY, link_id))
