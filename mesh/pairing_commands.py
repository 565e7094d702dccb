"""The ``cammesh mesh`` commands: create a mesh, open its pairing window, join it, show it.

A mesh is made once, on one card (``mesh create``), which then admits devices that type
the pairing code it prints; ``mesh open`` admits more later, on any member. The code
never travels (SPAKE2, mesh/pairing.py): a wrong code costs one of the window's few
guesses and ends in exit code 2, like every other bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import trio

from mesh.cli import Register
from mesh.errors import PairingError
from mesh.identity import Identity, short_id_of
from mesh.pairing import (
    Membership,
    PairingAttempt,
    PinnedPeer,
    create_mesh,
    load_membership,
    new_pairing_code,
    normalise_code,
    serve_pairing,
)
from protocol.messages import Role

Subparsers = Any  # argparse's _SubParsersAction, whose type is private
PAIRING_PORT = 7446
DEFAULT_WINDOW = 300.0
NOT_ALL_JOINED = 1  # exit code when --joins N was asked for and fewer came in the window


def parse_address(text: str, *, default_host: str, default_port: int) -> tuple[str, int]:
    """``HOST:PORT``, ``HOST``, ``:PORT`` or ``[v6]:PORT``; PairingError with an example if not."""
    host, port = text, str(default_port)
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else port
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise PairingError(f"{text!r} is not HOST:PORT (for example 192.168.1.20:{PAIRING_PORT})")
    return host or default_host, int(port)


def card_role(card: Path) -> Role:
    """The card's role, read from its catalog without taking the card (a node may be running)."""
    from storage.card import Card
    from storage.catalog import CATALOG_NAME, SqliteCatalog
    from storage.errors import CardBusy

    if not (Path(card) / CATALOG_NAME).is_file():
        raise PairingError(f"{card} is not a cammesh card; create one with `cammesh init`")
    try:
        with Card.open(card) as opened:
            return Role(opened.role)
    except CardBusy:  # a running node holds the card: its settings are still readable
        catalog = SqliteCatalog(Path(card) / CATALOG_NAME)
        try:
            return Role(catalog.settings()["role"])
        finally:
            catalog.close()


def say(text: str) -> None:
    """One line on stdout, flushed: scripts and tests read the code as soon as it is printed."""
    print(text, flush=True)


def members_of(identity: Identity, role: Role, membership: Membership) -> list[dict[str, Any]]:
    """Every device of the mesh as ``mesh show --json`` lists it, this one first."""
    me = {"device_id": identity.device_id, "short_id": identity.short_id, "name": identity.name,
          "role": role.value, "self": True}
    return [me, *({"device_id": p.device_id, "short_id": p.short_id, "name": p.name,
                   "role": p.role.value, "self": False} for p in membership.peers)]


# --- create and open: the pairing window -------------------------------------------------


def _window_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", default=f"0.0.0.0:{PAIRING_PORT}", metavar="HOST:PORT",
                   help=f"where joining devices connect (default 0.0.0.0:{PAIRING_PORT}; "
                   "port 0 picks a free one, printed)")
    p.add_argument("--window", type=float, default=DEFAULT_WINDOW, metavar="SECONDS",
                   help=f"keep pairing open this long (default {DEFAULT_WINDOW:g}; 0: do not open it)")
    p.add_argument("--joins", type=int, metavar="N",
                   help="close the window once N devices have joined (exit 1 if fewer came)")
    p.add_argument("--code", metavar="CODE",
                   help="use this code instead of a generated one (a generated code is safer)")
    p.add_argument("--wrong-codes", type=int, default=3, metavar="N",
                   help="close the window after N wrong codes, each one guess (default 3)")
    p.add_argument("--interface", metavar="IP",
                   help="advertise the window by mDNS on this address only (default: all)")
    p.add_argument("--no-discovery", action="store_true",
                   help="do not advertise the window by mDNS (joiners then need --host)")


def add_mesh(subparsers: Subparsers) -> None:
    mesh = subparsers.add_parser(
        "mesh", help="create a mesh, pair devices into it, show its members",
        description="Pair devices into one mesh. On the first device: `cammesh mesh create "
        "CARD`, which prints a pairing code and waits; on each other device: `cammesh mesh "
        "join CARD CODE`. Later, `cammesh mesh open CARD` on any member admits more devices. "
        "The code is never sent: a captured exchange does not reveal it.",
    )
    commands = mesh.add_subparsers(title="mesh commands", metavar="MESH_COMMAND", required=True)

    p = commands.add_parser(
        "create", help="start a new mesh on this card and admit devices with a printed code",
        description="Make CARD the first device of a new mesh, print a pairing code, and admit "
        "devices that type it (`cammesh mesh join`) until the window closes. Exit 0 when the "
        "window closed normally, 1 when --joins N devices did not all come, 2 when it closed "
        "on wrong codes.",
    )
    p.add_argument("card", type=Path, metavar="CARD", help="the card folder (see `cammesh init`)")
    _window_args(p)
    p.set_defaults(run=run_create)

    p = commands.add_parser(
        "open", help="admit more devices into this card's mesh",
        description="Open a pairing window on a device already in a mesh: print a new code and "
        "admit devices that type it, as `mesh create` does. A running node on the card keeps "
        "running and accepts the new devices at once.",
    )
    p.add_argument("card", type=Path, metavar="CARD", help="a card already in a mesh")
    _window_args(p)
    p.set_defaults(run=run_open)

    p = commands.add_parser(
        "join", help="join the mesh of a device showing a pairing code",
        description="Join CARD to the mesh of the device whose pairing window shows CODE. "
        "Without --host, the window is found by mDNS on the local network. A wrong code exits "
        "with code 2 and costs one of that window's attempts.",
    )
    p.add_argument("card", type=Path, metavar="CARD", help="the card folder (see `cammesh init`)")
    p.add_argument("code", metavar="CODE", help="the code the other device printed, e.g. k7qm-2xpa")
    p.add_argument("--host", metavar="HOST[:PORT]",
                   help=f"the pairing device's address (port default {PAIRING_PORT}); "
                   "default: find it by mDNS")
    p.add_argument("--from", dest="source", metavar="NAME",
                   help="when several devices are pairing nearby, join the one with this name")
    p.add_argument("--interface", metavar="IP", help="look for pairing windows on this address only")
    p.add_argument("--search", type=float, default=5.0, metavar="SECONDS",
                   help="how long to look for a pairing window by mDNS (default 5)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                   help="give up pairing after this long (default 30)")
    p.set_defaults(run=run_join)

    p = commands.add_parser(
        "show", help="this card's mesh and its members",
        description="Show the mesh CARD belongs to: the mesh hash (what discovery advertises; "
        "the mesh id itself stays secret) and every member with its short id, name and role. "
        "A member learns of devices that joined through another as soon as they meet.",
    )
    p.add_argument("card", type=Path, metavar="CARD")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=run_show)


def check_window(args: argparse.Namespace) -> None:
    """Refuse unusable window options before anything is made or opened."""
    if args.joins is not None and args.joins < 1:
        raise PairingError("--joins must be at least 1")
    if args.wrong_codes < 1:
        raise PairingError("--wrong-codes must be at least 1")
    if args.code is not None:
        normalise_code(args.code)
    parse_address(args.listen, default_host="0.0.0.0", default_port=PAIRING_PORT)


def run_create(args: argparse.Namespace) -> int:
    identity, role = Identity.load(args.card), card_role(args.card)
    check_window(args)
    membership = create_mesh(args.card)
    say(f"mesh {membership.mesh_hash[:16]} created on {args.card} ({identity.name}, "
        f"{identity.short_id})")
    return pairing_window(args, identity, role)


def run_open(args: argparse.Namespace) -> int:
    identity, role = Identity.load(args.card), card_role(args.card)
    check_window(args)
    membership = load_membership(args.card)
    say(f"mesh {membership.mesh_hash[:16]}: {len(membership.peers) + 1} device(s)")
    return pairing_window(args, identity, role)


def pairing_window(args: argparse.Namespace, identity: Identity, role: Role) -> int:
    """Run the pairing window the arguments describe; print each attempt as it happens."""
    if args.window <= 0:
        return 0
    code = args.code or new_pairing_code()
    host, port = parse_address(args.listen, default_host="0.0.0.0", default_port=PAIRING_PORT)

    def on_attempt(attempt: PairingAttempt) -> None:
        if attempt.outcome == "joined" and attempt.peer is not None:
            say(f"joined: {attempt.peer.name} ({attempt.peer.short_id}, {attempt.peer.role.value}) "
                f"from {attempt.address}")
        elif attempt.outcome == "wrong-code":
            say(f"wrong code from {attempt.address}")
        else:
            say(f"failed attempt from {attempt.address}: {attempt.detail}")

    async def window() -> list[PinnedPeer]:
        joined: list[PinnedPeer] = []
        closed: list[PairingError] = []  # raised outside the nursery, not as an exception group

        async def run_window(task_status: trio.TaskStatus[list[trio.SocketListener]]) -> None:
            try:
                joined.extend(await serve_pairing(
                    identity, args.card, code, role=role, host=host, port=port,
                    window=args.window, max_failures=args.wrong_codes, max_joins=args.joins,
                    on_attempt=on_attempt, task_status=task_status))
            except PairingError as exc:
                closed.append(exc)
            nursery.cancel_scope.cancel()  # the advertisement ends with the window

        async with trio.open_nursery() as nursery:
            try:
                listeners = await nursery.start(run_window)
            except OSError as exc:
                raise PairingError(f"cannot listen for pairing on {host}:{port}: "
                                   f"{exc.strerror or exc}; choose another --listen") from exc
            bound = int(listeners[0].socket.getsockname()[1])
            say(f"pairing code: {code}")
            until = f" or until {args.joins} joined" if args.joins else ""
            say(f"pairing on {host}:{bound} for {args.window:g} s{until}; on each other "
                f"device run: cammesh mesh join CARD {code}")
            if not args.no_discovery:
                nursery.start_soon(_advertise, identity, role, bound, args.interface)
        if closed:
            raise closed[0]
        return joined

    joined = trio.run(window)
    members = len(load_membership(args.card).peers) + 1
    say(f"pairing closed: {len(joined)} device(s) joined; the mesh has {members} device(s)")
    if args.joins is not None and len(joined) < args.joins:
        print(f"cammesh: only {len(joined)} of {args.joins} device(s) joined before the window "
              "closed; run `cammesh mesh open` to admit the others", file=sys.stderr)
        return NOT_ALL_JOINED
    return 0


async def _advertise(identity: Identity, role: Role, port: int, interface: str | None) -> None:
    """Advertise the window by mDNS until cancelled; without multicast, joiners use --host."""
    from mesh.discovery import advertise_pairing

    try:
        async with advertise_pairing(identity.device_id, identity.name, role, port,
                                     interfaces=[interface] if interface else None):
            await trio.sleep_forever()
    except Exception as exc:  # advertising is a convenience: its failure must not end the window
        say(f"not advertised by mDNS ({exc}): joiners need --host")


# --- join ----------------------------------------------------------------------------------


def run_join(args: argparse.Namespace) -> int:
    from mesh.pairing import join_mesh

    identity, role = Identity.load(args.card), card_role(args.card)
    normalise_code(args.code)  # a mistyped, too-short code fails before any network use

    async def join() -> Membership:
        if args.host is not None:
            host, port = parse_address(args.host, default_host="127.0.0.1",
                                       default_port=PAIRING_PORT)
        else:
            host, port = await _find_window(args.source, args.interface, args.search)
        return await join_mesh(identity, args.card, args.code, role=role, host=host, port=port,
                               timeout=args.timeout)

    membership = trio.run(join)
    say(f"{identity.name} ({identity.short_id}) joined mesh {membership.mesh_hash[:16]}; "
        f"it knows {len(membership.peers)} other device(s): "
        + ", ".join(f"{p.name} ({p.short_id})" for p in membership.peers))
    return 0


async def _find_window(source: str | None, interface: str | None, search: float) -> tuple[str, int]:
    from mesh.discovery import find_pairing_windows

    windows = await find_pairing_windows(timeout=search,
                                         interfaces=[interface] if interface else None)
    if source is not None:
        windows = [w for w in windows if w.name == source]
    if len(windows) == 1:
        say(f"found {windows[0].name} ({short_id_of(windows[0].device_id)}) pairing at "
            f"{windows[0].host}:{windows[0].port}")
        return windows[0].host, windows[0].port
    named = f" named {source!r}" if source is not None else ""
    if not windows:
        raise PairingError(
            f"no device{named} is pairing nearby (looked for {search:g} s by mDNS): run "
            "`cammesh mesh create` or `cammesh mesh open` on it, or give its address with --host"
        )
    listed = ", ".join(f"{w.name} at {w.host}:{w.port}" for w in windows)
    raise PairingError(f"{len(windows)} devices are pairing nearby ({listed}): "
                       "choose one with --from NAME or --host")


# --- show ----------------------------------------------------------------------------------


def run_show(args: argparse.Namespace) -> int:
    identity, role = Identity.load(args.card), card_role(args.card)
    membership = load_membership(args.card)
    members = members_of(identity, role, membership)
    if args.json:
        json.dump({"mesh_hash": membership.mesh_hash, "device_id": identity.device_id,
                   "members": members}, sys.stdout, indent=1)
        print()
        return 0
    from rich.console import Console
    from rich.table import Table

    from mesh.card_commands import shown

    table = Table("device", "name", "role", "", title=f"mesh {membership.mesh_hash[:16]}: "
                  f"{len(members)} device(s)")
    for member in members:
        table.add_row(member["short_id"], shown(member["name"]), member["role"],
                      "this card" if member["self"] else "")
    Console(highlight=False).print(table)
    return 0


COMMANDS: list[Register] = [add_mesh]
