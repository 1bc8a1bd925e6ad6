"""`fatoura` commands: demo, serve, worker, outbox, db, sandbox, telegram, whatsapp, agents, i18n."""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from core.config import Settings, get_settings

log = logging.getLogger("fatoura")


def _setup_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from core.db import upgrade

    upgrade(settings.database_url, args.revision)
    print(f"database at {args.revision}")
    return 0


def cmd_db_downgrade(args: argparse.Namespace, settings: Settings) -> int:
    from core.db import downgrade

    downgrade(settings.database_url, args.revision)
    print(f"database at {args.revision}")
    return 0


async def _seed(settings: Settings, accounts: int, seed: int) -> tuple[int, int]:
    from core.billers.sandbox.store import seed_generated, seed_samples
    from core.db import Database

    db = Database(settings.database_url)
    try:
        samples = await seed_samples(db)
        generated = await seed_generated(db, accounts, seed=seed) if accounts else 0
    finally:
        await db.dispose()
    return samples, generated


def cmd_sandbox_seed(args: argparse.Namespace, settings: Settings) -> int:
    import time

    from core.db import upgrade

    if args.accounts < 0:
        print("--accounts must be 0 or more", file=sys.stderr)
        return 2
    upgrade(settings.database_url)
    started = time.perf_counter()
    samples, generated = asyncio.run(_seed(settings, args.accounts, args.seed))
    print(f"sandbox: {samples} sample and {generated} generated accounts added "
          f"in {time.perf_counter() - started:.1f} s (seed {args.seed})")
    return 0


def _amount(raw: str, hint: str):  # noqa: ANN202 - Decimal, or None after telling what is wrong
    from core.errors import InvalidAmount
    from core.money import parse_amount

    try:
        return parse_amount(raw)
    except InvalidAmount:
        print(f"--amount must be a positive amount in dirhams{hint}", file=sys.stderr)
        return None


def cmd_sandbox_pay(args: argparse.Namespace, settings: Settings) -> int:
    """Pay a Fatourati reference or a Tashilat code at the sandbox "agency counter"."""
    from webhooks.sandbox_gateways import pay_reference

    amount = _amount(args.amount, ", e.g. 299.81")
    if amount is None:
        return 2
    result = asyncio.run(pay_reference(args.base_url or settings.public_base_url, None, args.reference, amount,
                                       late=args.late, settings=settings))
    print(f"counter: HTTP {result.status} {result.body}")
    return 0 if result.status < 400 else 1


def cmd_sandbox_issue(args: argparse.Namespace, settings: Settings) -> int:
    """The sandbox biller issues an invoice and sends the signed "invoice.issued" event."""
    from core.billers.sandbox.store import issue_invoice
    from core.db import Database
    from core.errors import UnknownAccount
    from core.services.biller_events import issued_event, post_event

    amount = _amount(args.amount, " (HT), e.g. 249.50")
    if amount is None:
        return 2

    async def issue() -> tuple[int, str, str]:
        db = Database(settings.database_url)
        try:
            account, invoice = await issue_invoice(db, args.account, amount, due_in_days=args.due_in)
        finally:
            await db.dispose()
        status, body = await post_event(args.base_url or settings.public_base_url, settings, account.biller,
                                        issued_event(account.ref, invoice.number))
        return status, body, f"{account.biller} {account.ref} No. {invoice.number} ({invoice.amount_ttc} MAD TTC)"

    try:
        status, body, what = asyncio.run(issue())
    except UnknownAccount:
        print(f"no sandbox account {args.account!r} (give its ref or its identifier)", file=sys.stderr)
        return 2
    print(f"issued {what}; event: HTTP {status} {body}")
    return 0 if status < 400 else 1


def cmd_outbox_status(args: argparse.Namespace, settings: Settings) -> int:
    from core.db import Database
    from core.services.outbox_status import outbox_status, render

    async def status() -> str:
        db = Database(settings.database_url)
        try:
            return render(await outbox_status(db))
        finally:
            await db.dispose()

    print(asyncio.run(status()))
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    uvicorn.run("webhooks.app:app", host=args.host, port=args.port, log_level=settings.log_level.lower(),
                proxy_headers=True, forwarded_allow_ips="*")
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from fatoura.demo import run_demo

    return asyncio.run(run_demo(settings, host=args.host, port=args.port, accounts=args.accounts))


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from fatoura.worker import run_worker

    return asyncio.run(run_worker(settings, once=args.once))


def cmd_telegram_polling(args: argparse.Namespace, settings: Settings) -> int:
    from bot.channels.telegram.runner import run_polling

    return asyncio.run(run_polling(settings))


def cmd_telegram_set_webhook(args: argparse.Namespace, settings: Settings) -> int:
    from bot.channels.telegram.runner import set_webhook

    return asyncio.run(set_webhook(settings, drop_pending=args.drop_pending))


def cmd_whatsapp_replay(args: argparse.Namespace, settings: Settings) -> int:
    from bot.channels.whatsapp.client import WhatsAppNotConfigured
    from bot.channels.whatsapp.replay import replay

    outcomes = ("error", "unhandled", None) if args.unhandled else ("error", None)
    try:
        results = asyncio.run(replay(settings, outcomes=outcomes, webhook_id=args.id))
    except WhatsAppNotConfigured as error:
        print(error, file=sys.stderr)
        return 2
    for webhook_id, outcome in results:
        print(f"webhook body {webhook_id}: {outcome}")
    return 0


def cmd_i18n(args: argparse.Namespace, settings: Settings) -> int:
    from fatoura.catalogs import run

    return run(args.action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fatoura", description="See and pay Moroccan bills from a chat.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser("demo", help="run everything in one process on sandbox data (web chat, agent console)")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--accounts", type=int, default=1000, help="generated sandbox accounts to load besides the samples")
    demo.set_defaults(func=cmd_demo)

    serve = commands.add_parser("serve", help="run the web app (webhooks.app:app) under uvicorn")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(func=cmd_serve)

    worker = commands.add_parser("worker", help="deliver the outbox (confirmations, notifications, reminders)")
    worker.add_argument("--once", action="store_true", help="deliver what is due, then exit")
    worker.set_defaults(func=cmd_worker)

    db = commands.add_parser("db", help="database migrations").add_subparsers(dest="action", required=True)
    up = db.add_parser("upgrade", help="migrate the database to the latest schema")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(func=cmd_db_upgrade)
    down = db.add_parser("downgrade", help="undo migrations")
    down.add_argument("revision")
    down.set_defaults(func=cmd_db_downgrade)

    sandbox = commands.add_parser("sandbox", help="sandbox billers").add_subparsers(dest="action", required=True)
    seed = sandbox.add_parser("seed", help="load the seeds' sample accounts and N generated accounts")
    seed.add_argument("--accounts", type=int, default=0)
    seed.add_argument("--seed", type=int, default=None, help="generator seed (default: SANDBOX_SEED)")
    seed.set_defaults(func=cmd_sandbox_seed)

    pay = sandbox.add_parser("pay", help="pay a Fatourati reference or a Tashilat code at the sandbox counter")
    pay.add_argument("reference", help="13-digit Fatourati reference or 12-digit Tashilat code")
    pay.add_argument("--amount", required=True, help="amount paid at the counter, e.g. 299.81")
    pay.add_argument("--late", action="store_true", help="pay after the reference has expired")
    pay.add_argument("--base-url", default=None, help="the web app (default: PUBLIC_BASE_URL)")
    pay.set_defaults(func=cmd_sandbox_pay)

    issue = sandbox.add_parser("issue", help="a sandbox biller issues a new invoice and sends its signed event")
    issue.add_argument("account", help="sandbox account ref or identifier (phone number, subscription code, ...)")
    issue.add_argument("--amount", required=True, help="amount HT in dirhams, e.g. 249.50")
    issue.add_argument("--due-in", type=int, default=15, help="days until the due date (default 15)")
    issue.add_argument("--base-url", default=None, help="the web app (default: PUBLIC_BASE_URL)")
    issue.set_defaults(func=cmd_sandbox_issue)

    box = commands.add_parser("outbox", help="the outbox").add_subparsers(dest="action", required=True)
    box.add_parser("status", help="queued / in flight / delivered / dead per channel, announcements, dead letters"
                   ).set_defaults(func=cmd_outbox_status)

    telegram = commands.add_parser("telegram", help="Telegram bot").add_subparsers(dest="action", required=True)
    telegram.add_parser("polling", help="run the bot with long polling").set_defaults(func=cmd_telegram_polling)
    hook = telegram.add_parser("set-webhook", help="point Telegram at PUBLIC_BASE_URL/webhooks/telegram")
    hook.add_argument("--drop-pending", action="store_true")
    hook.set_defaults(func=cmd_telegram_set_webhook)

    from fatoura.agents_cli import add_parser as add_agents_parser

    add_agents_parser(commands)

    whatsapp = commands.add_parser("whatsapp", help="WhatsApp channel").add_subparsers(dest="action", required=True)
    again = whatsapp.add_parser("replay", help="handle again the kept webhook bodies whose handling failed")
    again.add_argument("--id", type=int, help="only this webhook body")
    again.add_argument("--unhandled", action="store_true", help="also the bodies with parts not understood")
    again.set_defaults(func=cmd_whatsapp_replay)
    i18n = commands.add_parser("i18n", help="gettext catalogs (Babel)")
    i18n.add_argument("action", choices=["extract", "update", "compile", "check"])
    i18n.set_defaults(func=cmd_i18n)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    if getattr(args, "seed", "absent") is None:
        args.seed = settings.sandbox_seed
    _setup_logging(settings)
    return args.func(args, settings)


if __name__ == "__main__":
    sys.exit(main())
