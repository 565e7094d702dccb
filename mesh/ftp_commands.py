"""``cammesh ftp add|ls|remove``: the FTP accounts of a card, one per camera."""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mesh.ftp_accounts import add_account, load_accounts, remove_account


def add_ftp(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "ftp", help="FTP accounts for cameras that upload into this card's node",
        description="Manage the accounts cameras log in with when they upload to "
        "`cammesh node CARD --ftp PORT`.")
    commands = p.add_subparsers(title="ftp commands", metavar="COMMAND", required=True)
    add = commands.add_parser("add", help="create an account for one camera; prints its password once")
    add.add_argument("card", type=Path, metavar="CARD")
    add.add_argument("user", metavar="USER", help="the user name to enter in the camera")
    add.add_argument("--photographer", metavar="NAME",
                     help="who shoots with this camera: travels with each picture's metadata")
    add.set_defaults(run=run_add)
    ls = commands.add_parser("ls", help="list the card's FTP accounts")
    ls.add_argument("card", type=Path, metavar="CARD")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(run=run_ls)
    remove = commands.add_parser("remove", help="delete an account (a camera using it is refused)")
    remove.add_argument("card", type=Path, metavar="CARD")
    remove.add_argument("user", metavar="USER")
    remove.set_defaults(run=run_remove)


def run_add(args: argparse.Namespace) -> int:
    password = add_account(args.card, args.user, photographer=args.photographer)
    print(f"FTP account {args.user!r} created. Its password (shown only now, stored only as "
          f"a salted hash):\n\n    {password}\n")
    return 0


def run_ls(args: argparse.Namespace) -> int:
    accounts = load_accounts(args.card)
    if args.json:
        print(json.dumps([{"user": a.user, "photographer": a.photographer, "created": a.created}
                          for a in accounts.values()], indent=1))
        return 0
    table = Table("user", "photographer", "created", title=f"{len(accounts)} FTP account(s)")
    for a in accounts.values():
        created = datetime.datetime.fromtimestamp(a.created).strftime("%Y-%m-%d %H:%M")
        table.add_row(a.user, a.photographer or "-", created)
    Console().print(table)
    return 0


def run_remove(args: argparse.Namespace) -> int:
    remove_account(args.card, args.user)
    print(f"FTP account {args.user!r} removed")
    return 0


COMMANDS = [add_ftp]
