"""Start-up of `cammesh node`: launched to listening, to advertised, and to a paired peer's catalog.

Prints one JSON object (issue 13, "Start-up") with its targets and whether each was met, over
``--runs`` runs (min / median / max).  Real processes on loopback: real TLS, real mDNS on
127.0.0.1, cards paired beforehand, each node with ``--log-json``.

- ``node_listening_s``: from the Popen of `cammesh node` to its ``Listening`` log line (the TLS
  port bound: a peer that knows the address can connect);
- ``node_advertised_s``: from the same Popen to the moment a zeroconf browser in this process,
  listening on loopback since before the launch, sees the node's service (a peer on the link
  can find it); the node's own ``Advertised`` line is reported beside it;
- ``peer_catalog_s``: from both nodes listening (the later ``Listening`` line) to both having
  exchanged Hello and catalog (the later ``PeerReady``).  Three cases a run, the worst counts:
  a newcomer joins a running node and the newcomer dials (the smaller device id dials), the same
  with the running node dialling, and both launched at once (bench/field.py's situation).

The peer figures come from the same run: a bare interpreter (``python -c pass``, to its exit)
and one importing what any mDNS node in Python needs (``python -c "import zeroconf, trio"``, to
its first line on stdout); ``*_over_*`` are ratios.  The machine may be shared with other work:
compare the ratios, not the seconds.

Bytecode: the session this was written in sets PYTHONDONTWRITEBYTECODE=1, so every start would
compile cammesh from source (an installed package never does: pip writes the .pyc files).  The
nodes run with a warm bytecode cache under the bench's cache folder (PYTHONPYCACHEPREFIX);
``--cold-bytecode`` measures the compile-from-source start instead.

    python bench/startup.py [--runs 3] [--cold-bytecode]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zeroconf import ServiceBrowser, ServiceStateChange, Zeroconf  # noqa: E402

from mesh.desk_demo import DeviceSpec, make_mesh  # noqa: E402
from mesh.discovery import SERVICE_TYPE  # noqa: E402
from mesh.identity import Identity  # noqa: E402
from protocol.messages import Role  # noqa: E402
from tests.integration.nodes import NodeProcess, wait_until  # noqa: E402

CACHE = Path(tempfile.gettempdir()) / "cammesh-bench"
LISTENING_TARGET_S = 0.3
ADVERTISED_TARGET_S = 0.3
PEER_CATALOG_TARGET_S = 0.5
LOOPBACK = ["--listen=127.0.0.1:0", "--interface=127.0.0.1"]


class Sightings:
    """A zeroconf browser on loopback: when each cammesh instance name was first seen."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self.zc = Zeroconf(interfaces=["127.0.0.1"])
        self.browser = ServiceBrowser(self.zc, SERVICE_TYPE, handlers=[self._changed])

    def _changed(self, zeroconf: Zeroconf, service_type: str, name: str,
                 state_change: ServiceStateChange) -> None:
        if state_change is ServiceStateChange.Added:
            with self._lock:
                self.seen.setdefault(name, time.time())

    def first_seen(self, device_id: str) -> float | None:
        with self._lock:
            return self.seen.get(f"cammesh-{device_id[:24]}.{SERVICE_TYPE}")

    def wait_for(self, node: NodeProcess) -> float:
        me = device_id(node.card)
        return wait_until(f"{node.card.name}'s advertisement seen on loopback",
                          lambda: self.first_seen(me), timeout=60, every=0.01)

    def close(self) -> None:
        self.browser.cancel()
        self.zc.close()


def event_time(node: NodeProcess, name: str) -> float | None:
    run = node.runs
    return next((d["t"] for d in node.events(run) if d["event"] == name), None)


def logged(node: NodeProcess, name: str) -> float:
    return wait_until(f"{name} from {node.card.name}", lambda: event_time(node, name),
                      timeout=60, every=0.01)


def device_id(card: Path) -> str:
    return Identity.load(card).device_id


def solo(node: NodeProcess, sightings: Sightings) -> dict[str, float]:
    """One node launched alone: to listening, to its own Advertised line, to seen by a browser."""
    launched = time.time()
    node.start()
    try:
        listening = logged(node, "Listening")
        seen = sightings.wait_for(node) - launched
    finally:
        node.stop()
    advertised = event_time(node, "Advertised")  # a node before issue 13 has no such line
    return {"listening": listening - launched, "advertised_seen": seen,
            "advertised_log": math.nan if advertised is None else advertised - launched}


def fresh_pair(folder: Path) -> tuple[NodeProcess, NodeProcess]:
    """Two new cards paired with each other, as nodes on loopback, the smaller device id first."""
    cards = make_mesh(folder, [DeviceSpec("a", Role.CAMERA, 1 << 30),
                               DeviceSpec("b", Role.CAMERA, 1 << 30)])
    low, high = sorted(cards, key=device_id)
    return NodeProcess(low, LOOPBACK), NodeProcess(high, LOOPBACK)


def pair(first: NodeProcess, second: NodeProcess, sightings: Sightings, *, at_once: bool
         ) -> float:
    """Both listening to both PeerReady; ``first`` starts first (unless ``at_once``)."""
    first.start()
    try:
        if not at_once:
            sightings.wait_for(first)
        second.start()
        try:
            both_listening = max(logged(first, "Listening"), logged(second, "Listening"))
            ready = max(logged(first, "PeerReady"), logged(second, "PeerReady"))
        finally:
            second.stop()
    finally:
        first.stop()
    return ready - both_listening


def interpreter_s(code: str, *, to_first_line: bool) -> float:
    """Wall time of ``python -c code``: to its exit, or to its first line on stdout."""
    started = time.time()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    if to_first_line:
        proc.stdout.readline()
        took = time.time() - started
        proc.wait()
        return took
    proc.wait()
    return time.time() - started


def bytecode_env(cold: bool) -> str:
    """Point this process's children at a bytecode cache: warm (compiled now) or empty."""
    if cold:
        os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
        os.environ["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="cammesh-nopyc-")
        return "cold: cammesh compiled from source at every start (PYTHONDONTWRITEBYTECODE=1)"
    prefix = CACHE / "pycache"
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(prefix)
    subprocess.run([sys.executable, "-m", "compileall", "-q", "mesh", "protocol", "storage"],
                   cwd=ROOT, check=True)
    return f"warm, as an installed package has it (PYTHONPYCACHEPREFIX={prefix})"


def spread(values: list[float]) -> dict[str, float]:
    return {"min": round(min(values), 3), "median": round(statistics.median(values), 3),
            "max": round(max(values), 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cold-bytecode", action="store_true",
                        help="compile cammesh from source at every start (no .pyc files)")
    args = parser.parse_args()
    bytecode = bytecode_env(args.cold_bytecode)
    folder = Path(tempfile.mkdtemp(prefix="cammesh-startup-"))
    figures: dict[str, list[float]] = {k: [] for k in (
        "node_listening_s", "node_advertised_s", "node_advertised_logged_s", "peer_catalog_s",
        "peer_catalog_newcomer_dials_s", "peer_catalog_running_dials_s",
        "peer_catalog_both_at_once_s", "python_bare_s", "python_zeroconf_trio_s")}
    sightings = Sightings()
    try:
        for run in range(args.runs):
            figures["python_bare_s"].append(interpreter_s("pass", to_first_line=False))
            figures["python_zeroconf_trio_s"].append(
                interpreter_s("import zeroconf, trio; print(flush=True)", to_first_line=True))
            # Every case on new cards: a restarted name would still be in the browser's cache.
            alone = solo(fresh_pair(folder / f"{run}-solo")[0], sightings)
            figures["node_listening_s"].append(alone["listening"])
            figures["node_advertised_s"].append(alone["advertised_seen"])
            figures["node_advertised_logged_s"].append(alone["advertised_log"])
            # The smaller device id dials: order the launches so that each side dials once.
            low, high = fresh_pair(folder / f"{run}-newcomer")
            newcomer = pair(high, low, sightings, at_once=False)
            low, high = fresh_pair(folder / f"{run}-running")
            running = pair(low, high, sightings, at_once=False)
            at_once = pair(*fresh_pair(folder / f"{run}-at-once"), sightings, at_once=True)
            figures["peer_catalog_newcomer_dials_s"].append(newcomer)
            figures["peer_catalog_running_dials_s"].append(running)
            figures["peer_catalog_both_at_once_s"].append(at_once)
            figures["peer_catalog_s"].append(max(newcomer, running, at_once))
    finally:
        sightings.close()
    medians = {k: statistics.median(v) for k, v in figures.items()}
    targets = {"node_listening_s": LISTENING_TARGET_S, "node_advertised_s": ADVERTISED_TARGET_S,
               "peer_catalog_s": PEER_CATALOG_TARGET_S}
    result: dict[str, Any] = {
        "runs": args.runs,
        "where": "loopback: real processes, real TLS, real mDNS on 127.0.0.1; "
                 "the machine may be shared (compare the ratios)",
        "bytecode": bytecode,
        **{k: spread(v) for k, v in figures.items()},
        "node_listening_over_python_zeroconf_trio": round(
            medians["node_listening_s"] / medians["python_zeroconf_trio_s"], 2),
        "node_advertised_over_python_zeroconf_trio": round(
            medians["node_advertised_s"] / medians["python_zeroconf_trio_s"], 2),
        "node_listening_over_python_bare": round(
            medians["node_listening_s"] / medians["python_bare_s"], 2),
        "targets": targets,
        "met": {k: max(figures[k]) <= target for k, target in targets.items()},
        "met_by_median": {k: medians[k] <= target for k, target in targets.items()},
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
