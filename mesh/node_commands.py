"""The network commands: ``node`` runs a device; ``status``, ``peers``, ``request``, ``refuse``,
``get``, ``collect`` and ``repair`` talk to a running one through its control socket."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from mesh.control import ask
from mesh.errors import MeshError
from mesh.identity import short_id_of
from mesh.json_logs import JsonLogFormatter
from storage.sizes import format_size, parse_size

if TYPE_CHECKING:
    from rich.console import Console

    from mesh.ftp import FtpSettings
    from mesh.runtime import Runtime
    from storage.card import Card

Subparsers = Any
POLICIES = ("requested", "all")  # "thumbnails", the old word for "requested", is still taken


def _card_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("card", type=Path, metavar="CARD", help="the card folder of a running node")


def _json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


# --- node ------------------------------------------------------------------------------


def add_node(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "node",
        help="run this card as a device on the network",
        description="Run a device: serve paired peers over TLS, find them by mDNS, send "
        "thumbnails first and originals after, answer `cammesh status/request/get` on this "
        "machine. Stop it with Ctrl-C.",
    )
    p.add_argument("card", type=Path, metavar="CARD", help="the card folder (see `cammesh init`)")
    add_device_options(p, listen_flag="--listen")
    p.add_argument("--keys-for-desks", action="store_true",
                   help="send each picture's key, wrapped for it, to every desk paired as a desk, "
                        "so a desk can open originals this device dispersed even if this device "
                        "is lost (without it, only this card can open them)")
    p.add_argument("--log-json", action="store_true",
                   help="structured logs on stderr, one JSON object a line (node events with all fields)")
    p.add_argument("--no-live", action="store_true",
                   help="no live status view even when stdout is a terminal")
    p.set_defaults(run=run_node_command)


def parse_policies(items: list[str], members: list[str], *,
                   default: str = "all") -> tuple[str, dict[str, str]]:
    """``PEER=POLICY`` items to (default policy, {device id: policy}); MeshError when unclear.

    The old word ``thumbnails`` is taken as ``requested`` (what it always did), with a warning
    on stderr."""
    from protocol.config import OLD_POLICY_WORDS

    per_peer = {}
    for item in items:
        who, sep, policy = item.partition("=")
        if not sep or (policy not in POLICIES and policy not in OLD_POLICY_WORDS):
            raise MeshError(f"--policy {item!r}: use PEER=POLICY with POLICY one of {', '.join(POLICIES)}")
        if policy in OLD_POLICY_WORDS:
            new = OLD_POLICY_WORDS[policy].value
            print(f"warning: --policy {item!r}: {policy!r} is the old word for {new!r} "
                  f"(thumbnails always travel; originals only when asked for): write {who}={new}",
                  file=sys.stderr, flush=True)
            policy = new
        if who == "*":
            default = policy
            continue
        matches = [m for m in members if m.startswith(who.lower())]
        if len(matches) != 1:
            raise MeshError(f"--policy {item!r}: {who!r} names {len(matches)} paired devices, not one")
        per_peer[matches[0]] = policy
    return default, per_peer


def _logging(args: argparse.Namespace, live: Console | None) -> None:
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    handler: logging.Handler
    if args.log_json:
        handler = logging.StreamHandler()  # stderr: stdout may carry the live view
        handler.setFormatter(JsonLogFormatter())
    elif live is not None:
        from rich.logging import RichHandler

        handler = RichHandler(console=live, show_path=False, markup=False)
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.handlers[:] = [handler]


def add_device_options(p: argparse.ArgumentParser, *, listen_flag: str,
                       default_policy: str = "all") -> None:
    """The options of a running device, shared by `cammesh node` and `cammesh desk` (whose
    editor wants thumbnails and the originals asked for: ``default_policy="requested"``)."""
    p.set_defaults(default_policy=default_policy)
    p.add_argument(listen_flag, dest="node_listen", default="0.0.0.0:0", metavar="HOST:PORT",
                   help="where to accept peers (default: every address, any free port)")
    p.add_argument("--interface", metavar="IP", help="advertise by mDNS on this address only")
    p.add_argument("--peer", action="append", default=[], metavar="HOST:PORT",
                   help="also dial this peer directly (for networks without multicast); repeatable")
    p.add_argument("--no-discovery", action="store_true", help="do not use mDNS at all")
    p.add_argument("--watch", type=Path, metavar="DIR",
                   help="import files that appear in DIR (a tethered camera's DCIM) as captures, "
                   "each once it is finished (closed after writing, or renamed into DIR)")
    p.add_argument("--watch-mode", choices=("auto", "notify", "poll"), default="auto",
                   help="how --watch learns of files: notify (kernel notifications, a picture "
                   "is taken about 10 ms after its file is closed), poll (look every 0.5 s and "
                   "take files whose size and time held still: for network shares and cards "
                   "written elsewhere), or auto (the default: poll on network and FUSE "
                   "filesystems or where notifications cannot be set up, else notify)")
    p.add_argument("--policy", action="append", default=[], metavar="PEER=POLICY",
                   help="which originals to pull from PEER (an id prefix, or * for everyone); "
                   "thumbnails and metadata always come first: 'requested' pulls only the "
                   "originals (or smaller copies) asked for here (`cammesh request`, the desk's "
                   "Transfer), 'all' also mirrors every other original in the background "
                   f"(default: {default_policy}); repeatable, e.g. --policy '*=all'")
    p.add_argument("--rate", metavar="SIZE", help="limit sending to SIZE per second per peer, e.g. 5MB")
    p.add_argument("--high-water", type=float, default=0.9, metavar="FRACTION",
                   help="disperse originals to peers above this fraction of capacity (default 0.9)")
    p.add_argument("--replicas", type=int, default=1, help="holders per dispersed original (default 1)")
    ftp = p.add_argument_group("FTP for cameras", "cameras upload each frame with their own "
                               "FTP/FTPS client; accounts come from `cammesh ftp add`")
    ftp.add_argument("--ftp", metavar="[HOST:]PORT",
                     help="accept camera uploads on PORT (e.g. 2121, or 192.168.1.20:21; "
                          "default host: every IPv6 and IPv4 address)")
    ftp.add_argument("--ftp-require-tls", action="store_true",
                     help="refuse logins and transfers not protected by FTPS (AUTH TLS)")
    ftp.add_argument("--ftp-passive-ports", metavar="A-B",
                     help="passive-mode data ports, e.g. 50000-50100 (default: any free port)")
    ftp.add_argument("--ftp-uploads", type=Path, metavar="DIR",
                     help="where uploads land before their import (default: CARD.ftp beside "
                          "the card; never inside it)")
    ftp.add_argument("--ftp-data-timeout", type=float, default=60.0, metavar="SECONDS",
                     help="cut off an upload that sends nothing for this long (default 60)")
    ftp.add_argument("--ftp-login-delay", type=float, default=1.0, metavar="SECONDS",
                     help="wait this long before answering a wrong password (default 1); five "
                          "wrong ones from an address lock it out for 5 minutes")


def ftp_settings(args: argparse.Namespace) -> FtpSettings | None:
    """The FTP door's settings from `add_device_options`' flags; None without ``--ftp``."""
    if args.ftp is None:
        return None
    from mesh.ftp import FtpSettings
    from mesh.runtime import Address

    text = args.ftp if ":" in args.ftp else f":{args.ftp}"
    try:
        listen = Address.parse(text, default_host="::")
    except ValueError as exc:
        raise MeshError(f"--ftp {args.ftp!r}: give PORT or HOST:PORT (e.g. 2121)") from exc
    ports = None
    if args.ftp_passive_ports:
        low, sep, high = args.ftp_passive_ports.partition("-")
        if not (sep and low.isdigit() and high.isdigit() and 1024 <= int(low) <= int(high) < 65536):
            raise MeshError(f"--ftp-passive-ports {args.ftp_passive_ports!r}: give A-B with "
                            "1024 <= A <= B < 65536 (e.g. 50000-50100)")
        ports = range(int(low), int(high) + 1)
    if args.ftp_data_timeout <= 0:
        raise MeshError("--ftp-data-timeout needs a number of seconds above 0")
    if args.ftp_login_delay < 0:
        raise MeshError("--ftp-login-delay needs a number of seconds, 0 or more")
    card = args.card.resolve()
    uploads = args.ftp_uploads or card.with_name(card.name + ".ftp")
    if uploads.resolve().is_relative_to(card):
        raise MeshError(f"--ftp-uploads {uploads} is inside the card; choose a folder beside it")
    return FtpSettings(listen=listen, uploads=uploads.resolve(), require_tls=args.ftp_require_tls,
                       passive_ports=ports, data_timeout=args.ftp_data_timeout,
                       failed_login_delay=args.ftp_login_delay)


def build_runtime(args: argparse.Namespace, card: Card) -> Runtime:
    """The runtime of a device from the options `add_device_options` added (MeshError if bad)."""
    from mesh.identity import Identity
    from mesh.membership import load_membership
    from mesh.runtime import Address, Runtime
    from protocol.config import NodeConfig, Policy
    from protocol.messages import Role

    try:
        listen = Address.parse(args.node_listen, default_host="0.0.0.0")
        peers = [Address.parse(text) for text in args.peer]
    except ValueError as exc:
        raise MeshError(str(exc)) from exc
    members = load_membership(args.card)
    default, per_peer = parse_policies(args.policy, [p.device_id for p in members.peers],
                                       default=getattr(args, "default_policy", "all"))
    config = NodeConfig(
        name=card.name,
        role=Role(card.role),
        high_water=args.high_water,
        replicas=args.replicas,
        default_policy=Policy(default),
        policies={peer: Policy(policy) for peer, policy in per_peer.items()},
        share_marks=True,  # the editor's marks travel (issue 19)
    )
    return Runtime(card_path=args.card, card=card, identity=Identity.load(args.card),
                   config=config, listen=listen, static_peers=peers,
                   rate_limit=parse_size(args.rate) if args.rate else None,
                   keys_for_desks=getattr(args, "keys_for_desks", False))


def run_node_command(args: argparse.Namespace) -> int:
    from mesh.daemon import Controller, run_node
    from storage.card import Card

    # rich only for a terminal: a node under a service manager or a test starts without it.
    console = _console() if sys.stdout.isatty() and not args.no_live else None
    live_view = console is not None and console.is_terminal
    _logging(args, console if live_view else None)

    with Card.open(args.card) as card:
        runtime = build_runtime(args, card)
        ftp = ftp_settings(args)

        async def main() -> None:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async with trio.open_nursery() as nursery:
                    await nursery.start(lambda task_status: run_node(
                        runtime, discovery=not args.no_discovery, interface=args.interface,
                        watch=args.watch, watch_mode=args.watch_mode, ftp=ftp,
                        task_status=task_status))
                    if console is not None and live_view:
                        nursery.start_soon(_live, Controller(runtime), console)
                    async for signum in signals:
                        logging.getLogger("cammesh.node").info(
                            "stopping on %s", signal.Signals(signum).name)
                        nursery.cancel_scope.cancel()
                        break

        trio.run(main)
    return 0


def _console(**options: Any) -> Console:
    from rich.console import Console

    return Console(**options)


def _table(*columns: str, **options: Any) -> Any:
    from rich.table import Table

    return Table(*columns, **options)


async def _live(controller: Any, console: Console) -> None:
    """Redraw the status view twice a second, in the node's own process."""
    from rich.live import Live

    from mesh.status_view import render_status

    with Live(console=console, refresh_per_second=4, transient=True) as live:
        while True:
            live.update(render_status(await controller.handle({"op": "status"})))
            await trio.sleep(0.5)


def _when(seconds: float | None) -> str:
    import datetime

    if seconds is None:
        return ""
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%H:%M:%S.%f")[:-3]


# --- clients of a running node ------------------------------------------------------------


def add_status(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("status", help="what a running node is doing",
                              description="Show a running node's card room, peers and transfers.")
    _card_arg(p)
    _json_arg(p)
    p.add_argument("--watch", action="store_true",
                   help="keep showing it, live (peers, queues, progress bars) until Ctrl-C")
    p.set_defaults(run=run_status)


def run_status(args: argparse.Namespace) -> int:
    if args.watch:
        return _watch_status(args.card)
    answer = ask(args.card, {"op": "status"})
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    from mesh.device_names import shown

    console = _console(highlight=False)
    names = answer.get("names", {})
    console.print(f"[bold]{answer['name']}[/] ({answer['role']}, {answer['short_id']}) on port {answer['port']}")
    console.print(f"card: {format_size(answer['used'])} used of {format_size(answer['capacity'])}, "
                  f"{format_size(answer['free'])} free")
    smaller = answer.get("smaller") or {}
    if smaller.get("count"):
        console.print(f"smaller copies (reduced, not originals): {smaller['count']} "
                      f"({format_size(smaller['bytes'])}), {smaller['kept']} kept after "
                      "their original arrives")
    for peer, link in answer["links"].items():
        console.print(f"  {shown(names, peer)}: in {format_size(link['bytes_in'])}, "
                      f"out {format_size(link['bytes_out'])}", markup=False)
    ftp = answer.get("ftp")
    if ftp:
        console.print(f"FTP for cameras on port {ftp['port']}:")
        for cam in ftp["cameras"]:
            busy = ", ".join(f"{u['name']} ({format_size(u['bytes'])})" for u in cam["uploading"])
            console.print(f"  {cam['account']} ({cam['photographer'] or 'no photographer'}): "
                          f"{cam['frames']} frames, last {cam['last_frame'] or '-'} "
                          f"{_when(cam['last_frame_at'])}; uploading: {busy or 'nothing'}",
                          highlight=False, markup=False)
    return 0


def _watch_status(card: Path) -> int:
    import time

    from rich.live import Live

    from mesh.status_view import render_status

    console = _console()
    with Live(console=console, refresh_per_second=4) as live:
        while True:
            live.update(render_status(ask(card, {"op": "status"}, timeout=10.0)))
            time.sleep(0.5)


def add_peers(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("peers", help="paired devices and which are connected",
                              description="List the devices paired with this card, connected or not.")
    _card_arg(p)
    _json_arg(p)
    p.set_defaults(run=run_peers)


def run_peers(args: argparse.Namespace) -> int:
    answer = ask(args.card, {"op": "peers"})
    if args.json:
        print(json.dumps(answer["peers"], indent=2))
        return 0
    table = _table("device", "name", "role", "connected")
    for peer in answer["peers"]:
        table.add_row(short_id_of(peer["device_id"]), peer["name"], peer["role"],
                      "yes" if peer["connected"] else "no")
    _console().print(table)
    return 0


def add_request(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("request", help="pull a picture's original first (FIG. 14A)",
                              description="Ask for this picture's original ahead of every queued one, "
                              "optionally as a smaller recompressed copy.")
    _card_arg(p)
    p.add_argument("id", metavar="ID", help="picture id or a unique prefix (see `cammesh ls`)")
    p.add_argument("--max-side", type=int, metavar="PX", help="a smaller copy: longest side in pixels")
    p.add_argument("--quality", type=int, metavar="Q", help="a smaller copy: JPEG quality 1-100")
    p.set_defaults(run=run_request)


def run_request(args: argparse.Namespace) -> int:
    from mesh.control import check_smaller_request

    check_smaller_request(args.max_side, args.quality)  # before asking: one clear line
    answer = ask(args.card, dict(op="request", id=args.id, max_side=args.max_side, quality=args.quality))
    smaller = args.max_side is not None or args.quality is not None
    what = ("a smaller copy of " if smaller else "") + answer["id"][:12]
    outcome = answer.get("outcome")  # the node's own answer (protocol/outcomes.py)
    if outcome == "failed":
        _say(f"not requested: {what}: {answer['reason']}")
        return 1
    if outcome == "already_here":
        print(f"{what}: its original is on this card already")
    elif outcome == "collecting":
        print(f"requested {what}: collecting it home from its holder")
    elif outcome == "pending":
        print(f"requested {what}: waiting, {answer['reason']}")
    else:
        print(f"requested {what}" + (f" from {answer['peer_name']}" if "peer_name" in answer else ""))
    return 0


def add_refuse(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("refuse", help='mark a picture "not necessary" (FIG. 13B)',
                              description="Tell the sender this original is not needed; it leaves the queue.")
    _card_arg(p)
    p.add_argument("id", metavar="ID", help="picture id or a unique prefix")
    p.set_defaults(run=run_refuse)


def run_refuse(args: argparse.Namespace) -> int:
    answer = ask(args.card, {"op": "refuse", "id": args.id})
    print(f"refused {answer['id'][:12]}")
    return 0


def add_get(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("get", help="write a picture's original to a file, wherever it is",
                              description="Read a picture out: from this card, from the peer that "
                              "has it, or collected back from the holder it was dispersed to.")
    _card_arg(p)
    p.add_argument("id", metavar="ID", help="picture id or a unique prefix")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="FILE", help="where to write it")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="give up a read-out under way after this many seconds (default 300)")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="when the device holding it is away, wait this long for it to return "
                   "(default 0: fail at once, naming it)")
    p.set_defaults(run=run_get)


def run_get(args: argparse.Namespace) -> int:
    if args.wait < 0:
        raise MeshError("--wait needs a number of seconds, 0 or more")
    answer = ask(args.card, {"op": "get", "id": args.id, "path": str(args.output.resolve()),
                             "timeout": args.timeout, "wait": args.wait},
                 timeout=args.timeout + args.wait + 10, on_note=_say)
    print(f"wrote {answer['id'][:12]} to {args.output}")
    return 0


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def add_collect(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("collect", help="bring dispersed originals home",
                              description="Collect dispersed originals back from their holders "
                              "(when the card has room again); the holders then release them. "
                              "Exits 1 if any could not be collected (each is named, with why).")
    _card_arg(p)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--all", action="store_true", help="every dispersed original")
    group.add_argument("ids", nargs="*", default=[], metavar="ID", help="picture ids or prefixes")
    p.set_defaults(run=run_collect)


def run_collect(args: argparse.Namespace) -> int:
    answer = ask(args.card, {"op": "collect", "all": args.all, "ids": args.ids})
    print(f"collecting {len(answer['ids'])} original(s)")
    for item in answer.get("pending", []):
        _say(f"waiting: {item['id'][:12]}: {item['reason']}")
    for item in answer.get("refused", []):
        _say(f"not collected: {item['id'][:12]}: {item['reason']}")
    return 1 if answer.get("refused") else 0


def add_repair(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("repair", help="re-replicate what a lost holder held",
                              description="A holder is gone for good (lost, broken, wiped): copy "
                              "each original it held for this card from another holder to a new one. "
                              "An original it alone held stays listed, and is named.")
    _card_arg(p)
    p.add_argument("holder", metavar="HOLDER", help="the lost device: its name or an id prefix")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="wait this long for the copies (default 60); the node keeps trying after")
    p.set_defaults(run=run_repair)


def run_repair(args: argparse.Namespace) -> int:
    answer = ask(args.card, {"op": "repair", "holder": args.holder, "timeout": args.timeout},
                 timeout=args.timeout + 30)
    who = f"{answer['name']} ({short_id_of(answer['holder'])})"
    if answer["connected"]:
        _say(f"note: {who} is connected now; repair is for a holder that is gone for good")
    done = len(answer["repaired"]) + len(answer["unlisted"])
    print(f"repair of {who}: {done} original(s) repaired, {len(answer['copying'])} still copying, "
          f"{len(answer['failed'])} failed")
    for item in answer["repaired"]:
        print(f"  repaired {item['id'][:12]}: now held by {item['holder_name']}")
    for image_id in answer["unlisted"]:
        print(f"  {image_id[:12]}: its original is on this card; {answer['name']} is unlisted")
    for image_id in answer["copying"]:
        print(f"  copying {image_id[:12]}: not done yet; the node keeps trying")
    for item in answer["failed"]:
        _say(f"failed {item['id'][:12]}: {item['reason']}")
    return 1 if answer["failed"] else 0


COMMANDS = [add_node, add_status, add_peers, add_request, add_refuse, add_get, add_collect,
            add_repair]
