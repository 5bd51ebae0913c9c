"""``tradeguard users add|passwd|disable|enable|list``: accounts in the control DB.

``users add NAME --role ROLE [--shop ID ...]`` and ``users passwd NAME`` ask for the password twice
at a prompt (getpass), or read one line from stdin with ``--password-stdin``. There is no default
password; at least 8 characters. The change is audited under the OS user running the command.
``TRADEGUARD_BOOTSTRAP_ADMIN`` is applied first when no admin exists.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from tradeguard.settings import load_settings


class _PasswordInputError(ValueError):
    pass


def read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        if not line:
            raise _PasswordInputError("--password-stdin: nothing on stdin")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise _PasswordInputError("no terminal to ask the password: pass --password-stdin and pipe it")
    first = getpass.getpass("Password: ")
    second = getpass.getpass("Password (again): ")
    if first != second:
        raise _PasswordInputError("the two passwords differ; nothing changed")
    return first


def _operator() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"


def _table(rows: list[dict[str, Any]]) -> str:
    cols = ["name", "role", "shops", "disabled", "created_at", "last_login_at"]
    cells = [[c.upper() for c in cols]]
    for r in rows:
        cells.append([
            r["name"], r["role"], ",".join(r["shops"]) or "-", "yes" if r["disabled"] else "no",
            (r["created_at"] or "-")[:19], (r["last_login_at"] or "never")[:19],
        ])
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(cols))]
    return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
                     for row in cells)


def _handle(args: argparse.Namespace) -> int:
    from accounts.errors import AccountError
    from tradeguard.bootstrap import apply_bootstrap_admin, build_account_service

    settings = load_settings()
    service = build_account_service(settings)
    try:
        apply_bootstrap_admin(settings, service)
        by = _operator()
        if args.users_command == "add":
            record = service.add_user(args.name, args.role, read_password(args), shops=args.shop or (), by=by)
            print(f"user {record.name} added ({record.role}"
                  + (f", shops {', '.join(record.shops)})" if record.shops else ")"))
        elif args.users_command == "passwd":
            service.get_user(args.name)  # an unknown user is told before the password is asked
            service.set_password(args.name, read_password(args), by=by)
            print(f"password of {args.name} changed")
        elif args.users_command == "disable":
            service.disable(args.name, by=by)
            print(f"user {args.name} disabled")
        elif args.users_command == "enable":
            service.enable(args.name, by=by)
            print(f"user {args.name} enabled")
        elif args.users_command == "list":
            rows = [u.as_dict() for u in service.list_users()]
            print(json.dumps(rows) if args.json else (_table(rows) if rows else "no users"))
        else:
            print("tradeguard users: choose add, passwd, disable, enable or list", file=sys.stderr)
            return 2
    except (AccountError, _PasswordInputError) as exc:
        print(f"tradeguard users: {exc}", file=sys.stderr)
        return 2
    finally:
        service.close()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from common.identity import ROLES

    p = subparsers.add_parser(
        "users",
        help="accounts of the console: add, passwd, disable, enable, list",
        description="Users in the control DB (argon2id password hashes). Roles: "
        "admin (users), sre (rules, chaos), oncall (alerts), merchant (sales of its shops).",
    )
    sub = p.add_subparsers(dest="users_command", metavar="ACTION")

    add = sub.add_parser("add", help="add a user (password asked twice, or --password-stdin)")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--shop", action="append", metavar="ID",
                     help="shop a merchant is bound to (repeat for more)")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")

    passwd = sub.add_parser("passwd", help="set a user's password")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from stdin")

    for action, text in (("disable", "a disabled user cannot sign in"), ("enable", "allow sign-in again")):
        q = sub.add_parser(action, help=text)
        q.add_argument("name")

    ls = sub.add_parser("list", help="every user: role, shops, disabled, last login")
    ls.add_argument("--json", action="store_true", help="a JSON array")
    p.set_defaults(func=_handle, users_command=None)
