"""Meshes of real `cammesh node` processes for the dispersal tests and bench/dispersal.py,
and the audit of what their cards hold once they stop.

Builds on tests/integration/nodes.py (``NodeProcess``, ``wait_until``, ``write_pictures``):
this module adds fixed ports (a node restarted after SIGKILL comes back where its peers
dial it), the ``cammesh`` command as a subprocess, catalog snapshots of cards that running
nodes hold, and ``audit``, the no-picture-lost and lists-agree-with-holdings check.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesh.card_commands import Listing, read_listing
from mesh.desk_demo import DeviceSpec, make_mesh
from protocol.store import DispersalState, StoreError, Where
from storage.card import Card
from tests.integration.nodes import ROOT, WAIT_S, NodeProcess, wait_until

READ_STEP = 1 << 20
IN_FLIGHT = (DispersalState.REQUESTED, DispersalState.ACCEPTED, DispersalState.COLLECTING)


_HANDED_OUT: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    """A TCP port free on loopback now, which the node binds a moment later.

    Taken below the kernel's ephemeral range: a port the kernel gives out (to a bind to
    port 0, or as the source port of a node dialling a peer) could be the source port of
    some other connection by the time the node binds it, and then the node fails with
    "address already in use" (seen once in a CI run).
    """
    rng = random.Random()
    top = min(_ephemeral_low(), 65536)
    for _ in range(1000):
        port = rng.randrange(max(1024, top - 12000), top)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError("no free TCP port below the ephemeral range")


def cammesh(*args: str | Path, timeout: float = WAIT_S) -> subprocess.CompletedProcess[str]:
    """Run one ``cammesh`` command as a user would; the caller checks the exit code."""
    return subprocess.run([sys.executable, "-m", "mesh.cli", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def ls_json(card: Path, *, held: bool = False) -> list[dict[str, Any]]:
    """``cammesh ls CARD --json`` (or ``--held``), running node or not."""
    result = cammesh("ls", card, "--json", *(["--held"] if held else []))
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


@dataclass
class NodeCard:
    """One card of the mesh and, while it runs, its node on a fixed port (loopback by default,
    or an address inside a network namespace, see ``shaped_link``)."""

    name: str
    card: Path
    port: int
    args: list[str] = field(default_factory=list)
    node: NodeProcess | None = None
    host: str = "127.0.0.1"
    netns: str | None = None

    @property
    def running(self) -> NodeProcess:
        assert self.node is not None and self.node.proc is not None, f"{self.name} is not running"
        return self.node

    def device_id(self) -> str:
        from mesh.identity import Identity

        return Identity.load(self.card).device_id


@dataclass
class ProcessMesh:
    """Paired devices on loopback: each dials every other by its fixed port, no mDNS needed."""

    devices: dict[str, NodeCard]

    @classmethod
    def create(cls, folder: Path, specs: Sequence[DeviceSpec],
               args: dict[str, list[str]] | None = None) -> ProcessMesh:
        cards = make_mesh(folder, specs)
        return cls({spec.name: NodeCard(spec.name, card, free_port(), list((args or {}).get(spec.name, [])))
                    for spec, card in zip(specs, cards, strict=True)})

    def __getitem__(self, name: str) -> NodeCard:
        return self.devices[name]

    def start(self, name: str, *, wait: bool = True) -> NodeProcess:
        device = self.devices[name]
        peers = [arg for other in self.devices.values() if other is not device
                 for arg in ("--peer", f"{other.host}:{other.port}")]
        if device.node is None:
            device.node = NodeProcess(device.card, [], netns=device.netns)
        device.node.args = ["--listen", f"{device.host}:{device.port}", "--no-discovery", *peers,
                            *device.args]
        device.node.start()
        if wait:
            device.node.wait_ready()
        return device.node

    def start_all(self) -> None:
        for name in self.devices:
            self.start(name, wait=False)
        for device in self.devices.values():
            device.running.wait_ready()

    def connected(self, name: str) -> int:
        return sum(p["connected"] for p in self.devices[name].running.ask({"op": "peers"})["peers"])

    def wait_connected(self) -> None:
        want = len(self.devices) - 1
        for name in self.devices:

            def reached(name: str = name) -> bool:
                return self.connected(name) == want

            wait_until(f"{name} to reach every peer", reached)

    def stop_all(self) -> None:
        for device in self.devices.values():
            if device.node is not None:
                device.node.stop()

    def listings(self) -> dict[str, Listing]:
        """A catalog snapshot of every card (running or not)."""
        return {name: read_listing(d.card) for name, d in self.devices.items()}

    def cards(self) -> list[Path]:
        return [d.card for d in self.devices.values()]

    def ids(self) -> dict[str, str]:
        return {name: d.device_id() for name, d in self.devices.items()}


# --- a shaped link between two network namespaces ------------------------------------------------


def why_no_netns() -> str | None:
    """None when network namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "needs the ip and tc commands (iproute2)"
    if subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        return "`ip netns` is unavailable here"
    return None


def _sh(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")


@dataclass(frozen=True, slots=True)
class LinkEnd:
    """One end of a shaped link: its namespace, interface and address."""

    netns: str
    device: str
    address: str


@contextmanager
def shaped_link(mbit: float, *, subnet: str = "10.79.0", latency_ms: int = 20,
                burst: str = "16kb") -> Iterator[tuple[LinkEnd, LinkEnd]]:
    """Two fresh namespaces (unique names, so parallel runs never clash) joined by a veth
    pair shaped with tbf at ``mbit`` both ways (unshaped at 0), multicast routed on it;
    always removed."""
    tag = uuid.uuid4().hex[:6]
    sides = (LinkEnd(f"cmd-{tag}-a", f"cmd{tag}a", f"{subnet}.1"),
             LinkEnd(f"cmd-{tag}-b", f"cmd{tag}b", f"{subnet}.2"))
    try:
        for side in sides:
            _sh("ip", "netns", "add", side.netns)
            _sh("ip", "-n", side.netns, "link", "set", "lo", "up")
        _sh("ip", "link", "add", sides[0].device, "netns", sides[0].netns, "type", "veth",
            "peer", "name", sides[1].device, "netns", sides[1].netns)
        for side in sides:
            _sh("ip", "-n", side.netns, "addr", "add", f"{side.address}/24", "dev", side.device)
            _sh("ip", "-n", side.netns, "link", "set", side.device, "up", "multicast", "on")
            _sh("ip", "-n", side.netns, "route", "add", "224.0.0.0/4", "dev", side.device)
            if mbit:  # 0: an unshaped veth, as fast as the machine moves packets
                # tbf: the rate, a burst of a few packets, a short queue (like a Wi-Fi AP's)
                _sh("ip", "netns", "exec", side.netns, "tc", "qdisc", "add", "dev", side.device,
                    "root", "tbf", "rate", f"{mbit}mbit", "burst", burst,
                    "latency", f"{latency_ms}ms")
        yield sides
    finally:
        for side in sides:
            subprocess.run(["ip", "netns", "del", side.netns], capture_output=True)


Bench = Callable[[Any, Path, "tuple[LinkEnd, LinkEnd] | None"], dict[str, Any]]


def bench_on_link(run: Bench, args: Any, *, prefix: str, subnet: str = "10.79.0") -> dict[str, Any]:
    """A benchmark's ``run(args, folder, link)`` on a link shaped to ``args.mbit`` between two
    namespaces when it can be made (and ``args.loopback`` is not set), else on loopback with
    ``why_loopback`` said; its folder is ``args.keep`` or a temporary one removed after."""
    why_not = "asked for loopback" if args.loopback else why_no_netns()
    folder = args.keep or Path(tempfile.mkdtemp(prefix=prefix))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        if why_not is None:
            with shaped_link(args.mbit, subnet=subnet) as link:
                return run(args, folder, link)
        result = run(args, folder, None)
        result["why_loopback"] = why_not
        return result
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


# --- agreement of dispersion lists and holdings ----------------------------------------------


def disagreements(listings: dict[str, Listing], ids: dict[str, str]) -> list[str]:
    """Where the owners' dispersion lists and the holders' holdings differ, or anything is in flight.

    ``ids`` maps device name to device id. Empty once the mesh has settled.
    """
    names = {device_id: name for name, device_id in ids.items()}
    problems: list[str] = []
    listed: set[tuple[str, str, str]] = set()  # (owner, image, holder)
    for name, listing in listings.items():
        for entry in listing.dispersion:
            holder = names.get(entry.holder, entry.holder[:8])
            listed.add((ids[name], entry.image_id, entry.holder))
            if entry.state in IN_FLIGHT:
                problems.append(f"{name}: {entry.image_id[:8]} -> {holder} still {entry.state.value}")
            elif entry.holder in names and not any(
                h.image_id == entry.image_id and h.owner == ids[name]
                for h in listings[names[entry.holder]].held
            ):
                problems.append(f"{name} lists {entry.image_id[:8]} at {holder}, which does not hold it")
    for name, listing in listings.items():
        for held in listing.held:
            if (held.owner, held.image_id, ids[name]) not in listed:
                owner = names.get(held.owner, held.owner[:8])
                problems.append(f"{name} holds {held.image_id[:8]} for {owner}, whose list does not name it")
    return problems


# --- the audit of stopped cards ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Audit:
    """What the stopped cards hold: verified copies per picture, and every problem found."""

    copies: dict[str, list[str]]  # image id -> "card:local" / "card:held" copies that hash right
    problems: list[str]
    used: dict[str, tuple[int, int]]  # card name -> (used, capacity)


def _digest(read: Any, image_id: str, size: int) -> str:
    digest = hashlib.sha256()
    for offset in range(0, size, READ_STEP):
        digest.update(read(image_id, offset, min(READ_STEP, size - offset)))
    return digest.hexdigest()


def audit(cards: Iterable[Path], pictures: Iterable[str]) -> Audit:
    """Open every card (their nodes stopped) and check: each picture in ``pictures`` has a
    complete copy that hashes to its id, no card passes its capacity, and every owner's
    dispersion list agrees with its holders' holdings.  A held copy is sealed: it counts
    once its owner's card opens it to the picture (the holder's own card cannot)."""
    copies: dict[str, list[str]] = {p: [] for p in pictures}
    problems: list[str] = []
    used: dict[str, tuple[int, int]] = {}
    listings: dict[str, Listing] = {}
    ids: dict[str, str] = {}
    sealed: list[tuple[str, str, str, bytes]] = []  # image id, holder card, owner id, bytes
    cards = list(cards)
    for path in cards:
        with Card.open(path) as card:
            usage = card.usage()
            used[path.name] = (usage.used, usage.capacity)
            if usage.used > usage.capacity:
                problems.append(f"{path.name} uses {usage.used} of {usage.capacity} bytes")
            ids[path.name] = card.device_id
            for record in card.images():
                if record.where is Where.LOCAL and record.image_id in copies:
                    if _digest(card.read_original, record.image_id, record.size) == record.image_id:
                        copies[record.image_id].append(f"{path.name}:local")
                    else:
                        problems.append(f"{path.name}: local {record.image_id[:8]} hashes wrong")
            for held in card.held_originals():
                if held.image_id in copies:
                    data = card.read_held(held.image_id, 0, held.size)
                    if hashlib.sha256(data).hexdigest() == held.digest:
                        sealed.append((held.image_id, path.name, held.owner, data))
                    else:
                        problems.append(f"{path.name}: held {held.image_id[:8]} hashes wrong")
            listings[path.name] = Listing(card.images(), {}, card.dispersion_list(),
                                          card.held_originals(), usage)
    paths = {ids[path.name]: path for path in cards}
    for image_id, holder, owner, data in sealed:
        if owner not in paths:
            problems.append(f"{holder}: holds {image_id[:8]} for {owner[:8]}, no card of this mesh")
            continue
        with Card.open(paths[owner]) as card:
            try:
                plain = card.open_sealed(image_id, 0, data)
            except StoreError as exc:
                problems.append(f"{holder}: held {image_id[:8]} does not open: {exc}")
                continue
        if hashlib.sha256(plain).hexdigest() == image_id:
            copies[image_id].append(f"{holder}:held")
        else:
            problems.append(f"{holder}: held {image_id[:8]} opens to other bytes")
    for image_id, found in copies.items():
        if not found:
            problems.append(f"picture {image_id[:8]} has no complete, verified copy anywhere")
    problems.extend(disagreements(listings, ids))
    return Audit(copies, problems, used)
