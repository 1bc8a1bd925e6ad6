"""How the conversation's answers read: menus, invoice lists, details, accounts. Pure functions
of data and a Translator, so every text goes through gettext and every amount through Babel."""
from __future__ import annotations

from datetime import date

from bot.conversation import callbacks as cb
from bot.conversation.replies import Button, Text
from core.billers.base import SERVICE_LABELS, BillerInvoice
from core.errors import N_
from core.i18n import LANGUAGE_NAMES, LANGUAGES, Translator
from core.identifiers import display_phone
from core.models import LinkedAccount
from core.services.invoices import PAGE_SIZE, Filters, Listed, ListPage

PAYMENT_MEANS = {
    "cmi": N_("Card (CMI)"),
    "amanpay": N_("Amanpay"),
    "cheque": N_("Cheque"),
    "virement": N_("Bank transfer"),
    "fatourati": N_("Fatourati"),
    "tashilat": N_("Tashilat"),
}
STATUS = {"unpaid": N_("Unpaid"), "paid": N_("Paid"), "pending": N_("Payment in progress"), "cancelled": N_("Cancelled")}


def text(t: Translator, body: str, *rows: tuple[Button, ...] | list[Button], replace: bool = False) -> Text:
    return Text(body, tuple(tuple(row) for row in rows if row), replace=replace, rtl=t.rtl)


def menu_button(t: Translator) -> Button:
    return Button(t._("Menu"), cb.pack(cb.MENU))


def menu(t: Translator, *, has_accounts: bool, intro: str | None = None, replace: bool = False) -> Text:
    body = intro + "\n\n" if intro else ""
    body += t._("What would you like to do?") if has_accounts else t._(
        "Link your first account to see your bills: a phone number, a customer number or a subscription code.")
    rows = []
    if has_accounts:
        rows.append([Button(t._("Unpaid invoices"), cb.pack(cb.UNPAID, 1)),
                     Button(t._("Paid invoices"), cb.pack(cb.HISTORY))])
        rows.append([Button(t._("My payments"), cb.pack(cb.PAYMENTS)),
                     Button(t._("My accounts"), cb.pack(cb.ACCOUNTS))])
        rows.append([Button(t._("Reports"), cb.pack(cb.REPORTS, 0)), Button(t._("Link an account"), cb.pack(cb.LINK))])
        rows.append([Button(t._("Notifications"), cb.pack(cb.NOTIFY))])
    else:
        rows.append([Button(t._("Link an account"), cb.pack(cb.LINK))])
    rows.append([Button(t._("Language"), cb.pack(cb.LANGUAGE)), Button(t._("Help"), cb.pack(cb.HELP))])
    rows.append([agent_button(t)])
    return text(t, body, *rows, replace=replace)


def agent_button(t: Translator) -> Button:
    return Button(t._("Talk to an agent"), cb.pack(cb.HANDOFF))


def error(t: Translator, body: str, *rows: tuple[Button, ...] | list[Button]) -> Text:
    """An error's answer: its own buttons, then a way to a person."""
    return text(t, body, *rows, [agent_button(t)])


def languages(t: Translator) -> Text:
    return text(t, t._("Choose your language:"),
                [Button(LANGUAGE_NAMES[code], cb.pack(cb.LANGUAGE, code)) for code in LANGUAGES])


def service_label(t: Translator, service: str) -> str:
    return t._(SERVICE_LABELS[service]) if service in SERVICE_LABELS else service


def shown_identifier(identifier: str, rtl: bool = False) -> str:
    """A phone number as Moroccans write it. In right-to-left text it is isolated (LRI … PDI): the
    bidi algorithm would otherwise order its space-separated groups right to left (44 34 … 06)."""
    if identifier.startswith("212") and len(identifier) == 12:
        shown = display_phone(identifier)
        return f"\u2066{shown}\u2069" if rtl else shown
    return identifier


def account_name(t: Translator, link: LinkedAccount) -> str:
    return link.nickname or f"{service_label(t, link.service)} {shown_identifier(link.identifier, t.rtl)}"


def is_overdue(invoice: BillerInvoice, today: date) -> bool:
    return invoice.status == "unpaid" and invoice.due_date < today


def invoice_line(t: Translator, index: int, row: Listed, today: date, many_accounts: bool) -> str:
    invoice = row.invoice
    line = t._("{index}. {issuer} · No. {number}", index=index, issuer=invoice.issuer, number=invoice.number)
    line += "\n   " + t._("Due {date} · {amount}", date=t.date(invoice.due_date), amount=t.amount(invoice.amount_ttc))
    if is_overdue(invoice, today):
        line += " · " + t._("OVERDUE")
    if many_accounts:
        line += "\n   " + account_name(t, row.link)
    return line


def describe_filters(t: Translator, filters: Filters) -> str:
    parts = []
    if filters.status != "unpaid":
        parts.append(t._("status: {status}", status=t._(STATUS[filters.status]) if filters.status else t._("all")))
    if filters.issuer:
        parts.append(t._("issuer: {issuer}", issuer=filters.issuer))
    if filters.number:
        parts.append(t._("invoice: {number}", number=filters.number))
    if filters.date_from or filters.date_to:
        parts.append(t._("dates: {start} – {end}", start=t.date(filters.date_from), end=t.date(filters.date_to)))
    return ", ".join(parts)


def invoice_list(t: Translator, page: ListPage, filters: Filters, today: date, *, many_accounts: bool,
                 replace: bool = False, pay_link: int | None = None) -> Text:
    if filters.status == "unpaid":
        title = t._("Unpaid invoices")
    elif filters.status == "paid":
        title = t._("Paid invoices")
    else:
        title = t._("Invoices")
    lines = [title]
    described = describe_filters(t, filters)
    if described:
        lines.append(t._("Filters: {filters}", filters=described))
    for link in page.unavailable:
        lines.append(t._("{account}: the biller cannot be reached right now.", account=account_name(t, link)))
    if not page.total:
        lines.append(t._("No invoice matches.") if described else t._("You have no unpaid invoice."))
        return text(t, "\n".join(lines), [Button(t._("Filters"), cb.pack(cb.FILTERS)), menu_button(t)], replace=replace)
    lines.append(t.ngettext("{n} invoice, total {total}", "{n} invoices, total {total}", page.total,
                            total=t.amount(page.total_ttc)))
    if page.pages > 1:
        lines.append(t._("Page {page} of {pages}", page=page.page, pages=page.pages))
    first = (page.page - 1) * PAGE_SIZE + 1
    items = [invoice_line(t, first + i, row, today, many_accounts) for i, row in enumerate(page.items)]
    buttons = [Button(t._("{index}. No. {number}", index=first + i, number=row.invoice.number),
                      cb.pack(cb.INVOICE, row.link.id, row.invoice.number)) for i, row in enumerate(page.items)]
    rows: list[list[Button]] = [buttons[i:i + 2] for i in range(0, len(buttons), 2)]
    nav = []
    if page.page > 1:
        nav.append(Button(t._("◀ Previous"), cb.pack(cb.UNPAID, page.page - 1)))
    if page.page < page.pages:
        nav.append(Button(t._("Next ▶"), cb.pack(cb.UNPAID, page.page + 1)))
    rows.append(nav)
    if pay_link is not None:
        rows.append([Button(t._("Pay"), cb.pack(cb.PAY, pay_link))])
    elif filters.status == "unpaid":
        # One payment = one account and one issuer: pick the account first.
        accounts = {row.link.id: row.link for row in page.items}
        rows.append([Button(t._("Pay {account}", account=account_name(t, link))[:60], cb.pack(cb.PAY, link.id))
                     for link in list(accounts.values())[:3]])
    rows.append([Button(t._("Filters"), cb.pack(cb.FILTERS)), menu_button(t)])
    return text(t, "\n".join(lines) + "\n\n" + "\n\n".join(items), *rows, replace=replace)


def invoice_detail(t: Translator, link: LinkedAccount, invoice: BillerInvoice, today: date) -> Text:
    lines = [t._("Invoice No. {number}", number=invoice.number),
             t._("Issuer: {issuer}", issuer=invoice.issuer),
             t._("Type: {type}", type=invoice.invoice_type),
             t._("Client: {client}", client=invoice.client_name)]
    if invoice.customer_number:
        lines.append(t._("Customer number: {number}", number=invoice.customer_number))
    if invoice.call_number:
        lines.append(t._("Phone number: {number}", number=shown_identifier(invoice.call_number, t.rtl)))
    if invoice.billing_period:
        lines.append(t._("Billing period: {period}", period=t.period(invoice.billing_period)))
    lines.append(t._("Invoice date: {date}", date=t.date(invoice.invoice_date)))
    due = t._("Due date: {date}", date=t.date(invoice.due_date))
    if is_overdue(invoice, today):
        due += " · " + t._("OVERDUE")
    lines.append(due)
    lines.append("")
    lines.append(t._("Amount excl. tax (HT): {amount}", amount=t.amount(invoice.amount_ht)))
    lines.append(t._("VAT (TVA {rate}%): {amount}", rate=int(invoice.tva_rate * 100), amount=t.amount(invoice.amount_tva)))
    lines.append(t._("Total incl. tax (TTC): {amount}", amount=t.amount(invoice.amount_ttc)))
    lines.append(t._("Status: {status}", status=t._(STATUS.get(invoice.status, invoice.status))))
    if invoice.payment_means:
        means = ", ".join(t._(PAYMENT_MEANS.get(m, m)) for m in invoice.payment_means)
        lines.append(t._("Accepted payment means: {means}", means=means))
    if invoice.description:
        lines.append(t._("Description: {text}", text=invoice.description))
    for prestation in invoice.prestations:
        details = " · ".join(str(prestation[k]) for k in ("operation_type", "reference") if prestation.get(k))
        lines.append("• " + prestation.get("name", "") + (f" ({details})" if details else ""))
    first_row = [Button(t._("Get the PDF"), cb.pack(cb.PDF, link.id, invoice.number))]
    if invoice.status == "unpaid":
        first_row.insert(0, Button(t._("Pay"), cb.pack(cb.PAY, link.id)))
    rows = [first_row,
            [Button(t._("Back to the list"), cb.pack(cb.UNPAID, 0)), menu_button(t)]]
    return text(t, "\n".join(lines), *rows)


def history(t: Translator, rows: list[Listed]) -> Text:
    if not rows:
        return text(t, t._("No paid invoice yet."), [menu_button(t)])
    lines = [t._("Your last paid invoices:")]
    buttons = []
    for index, row in enumerate(rows, 1):
        invoice = row.invoice
        period = t.period(invoice.billing_period) if invoice.billing_period else t.date(invoice.invoice_date)
        lines.append(t._("{index}. {issuer} · {period} · {amount}", index=index, issuer=invoice.issuer, period=period,
                         amount=t.amount(invoice.amount_ttc)))
        buttons.append(Button(t._("PDF {index}", index=index), cb.pack(cb.PDF, row.link.id, invoice.number)))
    rows_ = [buttons[i:i + 3] for i in range(0, len(buttons), 3)]
    return text(t, "\n".join(lines), *rows_, [menu_button(t)])


def accounts(t: Translator, links: list[LinkedAccount]) -> Text:
    if not links:
        return menu(t, has_accounts=False)
    lines = [t._("Your linked accounts:")]
    for index, link in enumerate(links, 1):
        lines.append(f"{index}. {account_name(t, link)} — {link.holder_name or ''}".rstrip(" —"))
    rows = [[Button(f"{index}. {account_name(t, link)}"[:60], cb.pack(cb.ACCOUNTS, link.id))]
            for index, link in enumerate(links, 1)]
    return text(t, "\n".join(lines), *rows, [Button(t._("Link an account"), cb.pack(cb.LINK)), menu_button(t)])


def account(t: Translator, link: LinkedAccount, biller_name: str) -> Text:
    lines = [account_name(t, link),
             t._("Biller: {biller} · {service}", biller=biller_name, service=service_label(t, link.service)),
             t._("Identifier: {identifier}", identifier=shown_identifier(link.identifier, t.rtl))]
    if link.holder_name:
        lines.append(t._("Holder: {name}", name=link.holder_name))
    rows = [[Button(t._("Unpaid invoices"), cb.pack(cb.SCOPE, link.id)), Button(t._("Pay"), cb.pack(cb.PAY, link.id))],
            [Button(t._("Reports"), cb.pack(cb.REPORTS, link.id)), Button(t._("Rename"), cb.pack(cb.RENAME, link.id)),
             Button(t._("Unlink"), cb.pack(cb.UNLINK, link.id))],
            [Button(t._("My accounts"), cb.pack(cb.ACCOUNTS)), menu_button(t)]]
    return text(t, "\n".join(lines), *rows, replace=True)


def help_text(t: Translator) -> Text:
    body = "\n".join([
        t._("Fatoura shows your bills and lets you pay them from this chat."),
        "",
        t._("/start – main menu"),
        t._("/invoices – your unpaid invoices"),
        t._("/accounts – your linked accounts"),
        t._("/link – link a new account"),
        t._("/language – change the language"),
        t._("/notifications – new invoices and reminders, on or off"),
        t._("/forget – delete everything Fatoura stores about this chat"),
        t._("/agent – talk to a support agent"),
        "",
        t._("Fatoura never asks for your card number. Card payments happen on the bank's secure page."),
    ])
    return text(t, body, [menu_button(t)])
