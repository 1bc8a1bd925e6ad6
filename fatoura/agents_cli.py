"""`fatoura agents add|list|disable|enable`: support agents' console accounts."""
from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from core.config import Settings


async def _with_db(settings: Settings, work):  # noqa: ANN001, ANN202 - a coroutine function of the Database
    from core.db import Database, upgrade_async

    await upgrade_async(settings.database_url)
    db = Database(settings.database_url)
    try:
        return await work(db)
    finally:
        await db.dispose()


def _password(args: argparse.Namespace) -> str | None:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != first:
        print("the passwords differ", file=sys.stderr)
        return None
    return first


def cmd_add(args: argparse.Namespace, settings: Settings) -> int:
    from core.i18n import translator
    from core.services.agents import AgentError, add_agent

    password = _password(args)
    if password is None:
        return 2
    try:
        agent = asyncio.run(_with_db(settings, lambda db: add_agent(
            db, args.username, password, display_name=args.name, language=args.language,
            telegram_user_id=args.telegram_id)))
    except AgentError as error:
        print(translator("en").error(error), file=sys.stderr)
        return 2
    print(f"agent {agent.username} added; sign in at {settings.public_base_url.rstrip('/')}/agents")
    return 0


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    from core.services.agents import list_agents

    for agent in asyncio.run(_with_db(settings, list_agents)):
        state = "active" if agent.active else "disabled"
        telegram = f" telegram:{agent.telegram_user_id}" if agent.telegram_user_id else ""
        print(f"{agent.username}\t{agent.name}\t{state}\t{agent.language}{telegram}")
    return 0


def cmd_set_active(active: bool):  # noqa: ANN201 - a command function
    def run(args: argparse.Namespace, settings: Settings) -> int:
        from core.services.agents import set_active

        if not asyncio.run(_with_db(settings, lambda db: set_active(db, args.username, active))):
            print(f"no agent {args.username!r}", file=sys.stderr)
            return 1
        print(f"agent {args.username} {'enabled' if active else 'disabled (signed out everywhere)'}")
        return 0

    return run


def add_parser(commands) -> None:  # noqa: ANN001 - argparse's subparsers action
    agents = commands.add_parser("agents", help="support agents' console accounts").add_subparsers(
        dest="action", required=True)
    add = agents.add_parser("add", help="create an agent (asks the password)")
    add.add_argument("username")
    add.add_argument("--name", default=None, help="the name customers see (default: the username)")
    add.add_argument("--language", default="fr", choices=["fr", "ar", "en"], help="the console's language")
    add.add_argument("--telegram-id", type=int, default=None,
                     help="the agent's Telegram user id, to answer in the support group's topics")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin (scripts)")
    add.set_defaults(func=cmd_add)
    agents.add_parser("list", help="list the agents").set_defaults(func=cmd_list)
    for name, active in (("disable", False), ("enable", True)):
        sub = agents.add_parser(name, help=f"{name} an agent's account")
        sub.add_argument("username")
        sub.set_defaults(func=cmd_set_active(active))
