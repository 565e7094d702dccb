"""``cammesh demo``: two cameras and a desk on this machine tell the whole story, as a timeline.

Real parts only: cards in folders, SPAKE2 pairing, mutual TLS with pinned
certificates, mDNS discovery on 127.0.0.1, generated JPEGs, links paced like
Wi-Fi so the queue shows.  The story: thumbnails ahead of originals, a request
jumping the queue, a refusal, a card filling and dispersing (a reject, then an
accept), a read-out from the desk of a dispersed picture, collection back.
Every step is checked; one that did not happen fails the demo (exit 1).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
from rich import box
from rich.console import Console
from rich.table import Table

from mesh.card_commands import init_card
from mesh.cli import Register
from mesh.demo_timeline import DemoFailed, FoundByMdns, Timeline, percent
from mesh.errors import ReadOutError
from mesh.identity import Identity
from mesh.runtime import Address, Runtime
from protocol import room
from protocol.config import NodeConfig, Policy
from protocol.errors import CammeshError
from protocol.messages import Role
from protocol.store import DispersalState, Where
from storage.card import Card
from storage.sizes import format_size

Subparsers = Any
STEP_TIMEOUT = 30.0  # seconds any one step may take before the demo says it broke
FILL_MARK = 0.8  # alpha disperses above this fraction of its card
ROOM_MARK = 0.95  # ... and after room is made


@dataclass(frozen=True, slots=True)
class Plan:
    """How big the story is: pictures before and after the card fills, their size, the link."""

    first: int
    more: int
    side: int
    rate: float  # bytes per second per peer


FULL = Plan(first=6, more=3, side=1024, rate=400_000)
QUICK = Plan(first=5, more=2, side=640, rate=250_000)


def add_demo(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="watch two cameras and a desk sync, fill a card and disperse, on this machine",
        description="Start two cameras (alpha, with a small card, and bravo) and a desk on "
        "loopback: pair them (SPAKE2), find them by mDNS, link them with TLS, import generated "
        "pictures and print the story as a timeline. Exits 0 when every step happened, 1 "
        "naming the step that did not. Leaves nothing behind unless --keep.",
    )
    p.add_argument("--keep", type=Path, metavar="DIR",
                   help="create the cards in DIR (new or empty) and keep them for `cammesh ls`")
    p.add_argument("--quick", action="store_true", help="fewer, smaller pictures (a smoke test)")
    p.set_defaults(run=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=160)  # piped: long lines stay whole
    plan = QUICK if args.quick else FULL
    with ExitStack() as stack:
        if args.keep is not None:
            folder: Path = args.keep
            if folder.exists() and any(folder.iterdir()):
                raise DemoFailed(f"--keep {folder}: the folder is not empty; name a new one")
            folder.mkdir(parents=True, exist_ok=True)
        else:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cammesh-demo-")))
        try:
            summary = trio.run(_story, folder, plan, console)
        except (CammeshError, OSError, BaseExceptionGroup) as exc:
            reason = _expected_failure(exc)
            if reason is None:
                raise  # a bug: keep the traceback
            console.print(f"[bold red]demo failed:[/] {reason}", highlight=False)
            return 1
    _print_summary(console, summary)
    if args.keep is not None:
        console.print(f"cards kept in {args.keep}: try `cammesh ls {args.keep / 'alpha'}` and "
                      f"`cammesh ls {args.keep / 'bravo'} --held`", markup=False)
    return 0


def _expected_failure(exc: BaseException) -> str | None:
    """The message of a failure the demo can explain (a step, pairing, a port, a disk), even
    from inside trio's exception groups; None for anything else."""
    if isinstance(exc, BaseExceptionGroup):
        reasons = [_expected_failure(e) for e in exc.exceptions]
        return None if None in reasons else "; ".join(r for r in reasons if r)
    if isinstance(exc, CammeshError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else "")
    return None


@dataclass(frozen=True, slots=True)
class DemoDevice:
    """One device of the demo: its card and the runtime that serves it, in this process."""

    name: str
    path: Path
    card: Card
    runtime: Runtime


async def _story(folder: Path, plan: Plan, console: Console) -> dict[str, str]:
    from mesh.desk_demo import write_demo_pictures

    started = time.time()
    files = write_demo_pictures(folder / "pictures", plan.first + plan.more, seed=1,
                                start_time=started - 3600, side=plan.side)
    sizes = [f.stat().st_size for f in files]
    first_bytes = sum(sizes[:plan.first])
    # alpha's card: the first import stays under its mark, each later one passes it.
    alpha_capacity = int((first_bytes + max(sizes) // 2) / FILL_MARK)
    # The desk keeps little: after one original it is past its own mark, so it rejects.
    desk_capacity = int(1.6 * max(sizes))
    specs = [("alpha", Role.CAMERA, alpha_capacity), ("bravo", Role.CAMERA, 2 * 1024**3),
             ("desk", Role.DESK, desk_capacity)]
    cards: list[Card] = []
    try:
        for name, role, capacity in specs:
            cards.append(init_card(folder / name, name=name, capacity=capacity,
                                   role=role.value, reserve=None))
        identities = {name: Identity.load(folder / name) for name, _, _ in specs}
        names = {i.device_id: name for name, i in identities.items()}
        # A picture's id is its original's SHA-256: label the lines with file names from the start.
        labels = {hashlib.sha256(f.read_bytes()).hexdigest(): f.stem for f in files}
        timeline = Timeline(console, names, labels)
        console.print(f"cammesh demo: {len(files)} generated pictures of about "
                      f"{format_size(sum(sizes) // len(sizes))}, links paced at "
                      f"{format_size(int(plan.rate))}/s, cards in {folder}", markup=False)
        timeline.section("pairing")
        await _pair(folder, identities, timeline)
        configs = {
            "alpha": NodeConfig(name="alpha", role=Role.CAMERA, high_water=FILL_MARK,
                                default_policy=Policy.REQUESTED),
            "bravo": NodeConfig(name="bravo", role=Role.CAMERA, default_policy=Policy.ALL),
            "desk": NodeConfig(name="desk", role=Role.DESK, default_policy=Policy.REQUESTED),
        }
        devices = {
            name: DemoDevice(name, folder / name, card, Runtime(
                card_path=folder / name, card=card, identity=identities[name], config=configs[name],
                listen=Address("127.0.0.1", 0), rate_limit=plan.rate))
            for (name, _, _), card in zip(specs, cards, strict=True)
        }
        for device in devices.values():
            device.runtime.subscribe(timeline.listener(device.name))
        return await _run(devices, files, plan, timeline)
    finally:
        for card in cards:
            card.close()


async def _pair(folder: Path, identities: dict[str, Identity], timeline: Timeline) -> None:
    """alpha creates the mesh and shows a code; bravo and the desk join with it (SPAKE2)."""
    from mesh.pairing import create_mesh, join_mesh, new_pairing_code, serve_pairing

    create_mesh(folder / "alpha")
    code = new_pairing_code()
    timeline.add("alpha", "mesh", f"creates a mesh and opens pairing with the code {code} "
                 "(SPAKE2: the code never crosses the wire)")
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(lambda task_status: serve_pairing(
            identities["alpha"], folder / "alpha", code, role=Role.CAMERA, host="127.0.0.1",
            port=0, window=STEP_TIMEOUT, max_joins=2, task_status=task_status))
        port = listeners[0].socket.getsockname()[1]
        for name, role in (("bravo", Role.CAMERA), ("desk", Role.DESK)):
            membership = await join_mesh(identities[name], folder / name, code, role=role,
                                         host="127.0.0.1", port=port)
            pinned = ", ".join(p.name for p in membership.peers)
            timeline.add(name, "paired", f"joins with the code; pins the certificate of {pinned}")


async def _run(devices: dict[str, DemoDevice], files: list[Path], plan: Plan,
               timeline: Timeline) -> dict[str, str]:
    from mesh.daemon import run_node

    alpha, bravo, desk = devices["alpha"], devices["bravo"], devices["desk"]
    found = FoundByMdns(timeline)
    failure: DemoFailed | None = None
    summary: dict[str, str] = {}
    node_log = logging.getLogger("cammesh.node")
    saved = node_log.level, node_log.propagate
    node_log.addHandler(found)
    if not node_log.isEnabledFor(logging.INFO):  # quiet unless -v: only our handler listens
        node_log.setLevel(logging.INFO)
        node_log.propagate = False
    try:
        async with trio.open_nursery() as nursery:
            timeline.section("discovery and links")
            for device in devices.values():
                await nursery.start(lambda task_status, r=device.runtime: run_node(
                    r, discovery=True, interface="127.0.0.1", task_status=task_status))
            if timeline.console.is_terminal:
                nursery.start_soon(_progress, devices, timeline)
            try:
                await timeline.wait_for("all three links (mDNS, then TLS)",
                                        lambda: len(timeline.find("linked")) >= 3, 2 * STEP_TIMEOUT)
                summary = await _tell(alpha, bravo, desk, files, plan, timeline)
            except (DemoFailed, ReadOutError, trio.TooSlowError) as exc:
                # Raised here, outside the nursery, so it is not wrapped in an exception group.
                failure = exc if isinstance(exc, DemoFailed) else DemoFailed(
                    f"the desk's read-out did not finish: {exc or 'it took too long'}")
            nursery.cancel_scope.cancel()
    finally:
        node_log.removeHandler(found)
        node_log.setLevel(saved[0])
        node_log.propagate = saved[1]
    if failure is not None:
        raise failure
    return summary


async def _progress(devices: dict[str, DemoDevice], timeline: Timeline) -> None:
    """On a terminal: one live line under the timeline, what the story waits for and the
    originals on their way (from each runtime's incoming streams)."""
    with timeline.console.status("") as status:
        while True:
            moving = [f"{timeline.label(i.image_id)} → {name} {100 * i.done // max(i.total, 1)}%"
                      for name, d in devices.items() for i in list(d.runtime.incoming.values())
                      if i.done < i.total][:3]  # finished streams linger there at 100%
            status.update(f"waiting for {timeline.waiting}" + (f"  ·  {', '.join(moving)}" if moving else ""))
            await trio.sleep(0.1)


async def _import(device: DemoDevice, files: list[Path], timeline: Timeline) -> list[str]:
    timeline.add(device.name, "import", f"imports {', '.join(f.stem for f in files)} "
                 f"({format_size(sum(f.stat().st_size for f in files))})")
    summary = await device.runtime.import_pictures(files)
    ids = [item.image_id for item in summary.imported]
    if len(ids) != len(files):
        reasons = "; ".join(f"{s.path}: {s.reason}" for s in summary.rejected)
        raise DemoFailed(f"{device.name} imported {len(ids)} of {len(files)} pictures: {reasons}")
    usage = await device.runtime.call(device.card.usage)
    mark = device.runtime.node.config.high_water
    timeline.add(device.name, "usage", f"card at {percent(usage.used, usage.capacity)} of "
                 f"{format_size(usage.capacity)}" + (f", past its {mark:.0%} mark" if
                                                     usage.used > mark * usage.capacity else ""))
    return ids


async def _tell(alpha: DemoDevice, bravo: DemoDevice, desk: DemoDevice, files: list[Path], plan: Plan,
                timeline: Timeline) -> dict[str, str]:
    t = timeline
    t.section("thumbnails first; a request jumps the queue; a refusal")
    first = await _import(alpha, files[:plan.first], t)
    wanted, refused, viewed = first[-1], first[-2], first[2]
    await t.wait_for("bravo's thumbnails of the first pictures",
                     lambda: all(t.find("thumbnail", device="bravo", image=i) for i in first), STEP_TIMEOUT)
    t.add("bravo", "request", f"asks for {t.label(wanted)} first (the user opened it): it jumps "
          "ahead of the originals bravo is pulling in the background", image=wanted)
    await bravo.runtime.call(bravo.runtime.node.request, wanted, time.time())
    t.add("bravo", "refuse", f"refuses {t.label(refused)}: not needed here, its original "
          "will not be sent", image=refused)
    await bravo.runtime.call(bravo.runtime.node.refuse, refused, time.time())
    await t.wait_for(f"bravo's requested original {t.label(wanted)}",
                     lambda: bool(t.find("original", device="bravo", image=wanted)), STEP_TIMEOUT)
    behind = [t.label(i) for i in first[:-2] if not t.find("original", device="bravo", image=i)]
    if not behind:
        raise DemoFailed(f"the request did not jump the queue: every earlier original was at "
                         f"bravo before {t.label(wanted)}")
    t.add("bravo", "jumped", f"{t.label(wanted)} arrived ahead of {', '.join(behind)}, "
          "queued before it", image=wanted)
    t.add("desk", "request", f"asks for {t.label(viewed)} full size (the desk pulls only "
          "thumbnails by itself)", image=viewed)
    await desk.runtime.call(desk.runtime.node.request, viewed, time.time())
    pulled = [i for i in first if i != refused]
    await t.wait_for("bravo's background originals and the desk's requested one", lambda: all(
        t.find("original", device="bravo", image=i) for i in pulled)
        and bool(t.find("original", device="desk", image=viewed)), STEP_TIMEOUT)
    usage = await desk.runtime.call(desk.card.usage)
    t.add("desk", "usage", f"its disk (a small quota: {format_size(usage.capacity)}) now keeps "
          f"{format_size(usage.used)}: no room under its 90% mark for another original")

    t.section(f"alpha's card fills: dispersal above {FILL_MARK:.0%}")
    more: list[str] = []
    for path in files[plan.first:]:
        new = await _import(alpha, [path], t)
        more += new
        for entry in await alpha.runtime.call(alpha.card.dispersion_list):
            holder = t.name(entry.holder)
            if entry.state is DispersalState.REQUESTED and not t.find(
                    "dispersal-request", device="alpha", image=entry.image_id, peer=holder):
                t.asked("alpha", entry.image_id, holder)
        await _settle(alpha, t, f"alpha back under its mark after importing {t.label(new[0])}")
    dispersed = [e.image for e in t.find("dispersed", device="alpha") if e.image]
    if not dispersed:
        raise DemoFailed("alpha passed its mark but dispersed nothing")
    if not t.find("reject", device="alpha"):
        raise DemoFailed("no holder rejected a dispersal request (the desk should have: no room)")
    await _check_dispersed(alpha, bravo, dispersed, t)

    t.section("read-out from the desk of a dispersed picture")
    target = dispersed[0]
    keeper = t.find("dispersed", device="alpha", image=target)[0].peer or "its holder"
    t.waiting = f"the desk's read-out of {t.label(target)}"
    t.add("desk", "read-out", f"reads out {t.label(target)}: alpha relays it from its holder "
          f"{keeper}", image=target)
    data = bytearray()

    def sink(offset: int, chunk: bytes) -> None:
        if offset != len(data):
            raise DemoFailed(f"read-out bytes out of order at {offset}")
        data.extend(chunk)

    with trio.fail_after(STEP_TIMEOUT):
        digest = await desk.runtime.read_out(target, sink)
    source = _source_of(files, t.label(target)).read_bytes()
    if digest != target or bytes(data) != source:
        raise DemoFailed(f"the read-out of {t.label(target)} is not byte-identical to the picture imported")
    t.add("desk", "readout", f"{t.label(target)}: {format_size(len(data))}, SHA-256 verified, "
          "byte-identical to the file alpha imported", image=target)

    t.section("room made; collection back")
    await alpha.runtime.set_high_water(ROOM_MARK)
    usage = await alpha.runtime.call(alpha.card.usage)
    t.add("alpha", "room", f"room made (as after offloading): mark raised to {ROOM_MARK:.0%}, card at "
          f"{percent(usage.used, usage.capacity)}")
    t.add("alpha", "collect", f"collects {t.label(target)} home (`cammesh collect`)", image=target)
    await alpha.runtime.call(alpha.runtime.node.collect, [target], time.time())
    await t.wait_for(f"{t.label(target)} home at alpha and released by {keeper}", lambda: bool(
        t.find("collected", device="alpha", image=target)
        and t.find("released", image=target)), STEP_TIMEOUT)
    record = await alpha.runtime.call(alpha.card.image, target)
    still_held = [d.name for d in (bravo, desk) if await d.runtime.call(d.card.held, target)]
    if record is None or record.where is not Where.LOCAL or still_held:
        raise DemoFailed(f"after collection {t.label(target)} is not local at alpha only "
                         f"(still held by {still_held})")
    return await _summary(alpha, bravo, desk, first + more, refused, dispersed, len(data), t)


def _under_mark(device: DemoDevice) -> bool:
    return not room.over_mark(device.card.usage(), device.runtime.node.config.high_water)


async def _settle(device: DemoDevice, t: Timeline, what: str) -> None:
    """Wait until the device's card is under its mark again (checked off the trio thread)."""
    t.waiting = what
    with trio.move_on_after(STEP_TIMEOUT):
        while True:
            change = t.change()
            if await device.runtime.call(_under_mark, device):
                return
            await change.wait()
    raise DemoFailed(f"{what} did not happen within {STEP_TIMEOUT:g} s")


def _source_of(files: list[Path], label: str) -> Path:
    return next(f for f in files if f.stem == label)


async def _check_dispersed(alpha: DemoDevice, bravo: DemoDevice, dispersed: list[str], t: Timeline) -> None:
    """Each dispersed original: freed at alpha with its thumbnail kept, held somewhere, listed."""
    for image_id in dispersed:
        record = await alpha.runtime.call(alpha.card.image, image_id)
        entries = await alpha.runtime.call(alpha.card.dispersion, image_id)
        if record is None or record.where is not Where.DISPERSED or not record.thumbnail:
            raise DemoFailed(f"{t.label(image_id)} should be dispersed at alpha with its thumbnail kept")
        if not any(e.state is DispersalState.STORED for e in entries):
            raise DemoFailed(f"alpha's dispersion list names no holder that stored {t.label(image_id)}")
        if not t.find("held", image=image_id):
            raise DemoFailed(f"no device said it holds {t.label(image_id)}")
    usage = await alpha.runtime.call(alpha.card.usage)
    if usage.used > usage.capacity:
        raise DemoFailed(f"alpha's card passed its capacity: {usage.used} of {usage.capacity} bytes")


async def _summary(alpha: DemoDevice, bravo: DemoDevice, desk: DemoDevice, ids: list[str], refused: str,
                   dispersed: list[str], read_bytes: int, t: Timeline) -> dict[str, str]:
    checked, problems = t.thumbnail_first()
    if problems:
        raise DemoFailed("; ".join(problems))
    if t.find("original", device="bravo", image=refused):
        raise DemoFailed(f"bravo refused {t.label(refused)} but its original arrived anyway")
    record = await bravo.runtime.call(bravo.card.image, refused)
    if record is None or record.where is Where.LOCAL:
        raise DemoFailed(f"bravo's card has {t.label(refused)}'s original, which it refused")
    records = [await alpha.runtime.call(alpha.card.image, i) for i in ids]
    total = sum(r.size for r in records if r is not None)
    return {
        "pictures": f"{len(ids)} imported at alpha ({format_size(total)})",
        "thumbnails": f"at every peer before its original: {checked} originals checked",
        "request": "jumped the queue at bravo",
        "refusal": f"{t.label(refused)} never sent to bravo",
        "dispersed": f"{len(dispersed)} ({', '.join(t.label(i) for i in dispersed)}), "
                     f"{len(t.find('reject'))} reject(s) first",
        "read-out": f"{t.label(dispersed[0])} at the desk, {format_size(read_bytes)}, byte-identical",
        "collected": f"{t.label(dispersed[0])} home at alpha, released by its holder",
        "time": f"{t.entries[-1].at:.1f} s",
    }


def _print_summary(console: Console, summary: dict[str, str]) -> None:
    table = Table(box=box.SIMPLE_HEAD, title="demo done: every step of the story happened")
    table.add_column("step", no_wrap=True)
    table.add_column("result")
    for step, result in summary.items():
        table.add_row(step, result)
    console.print(table)


COMMANDS: list[Register] = [add_demo]
