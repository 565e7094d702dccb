"""Benchmark: a field day of 10 cameras x 300 pictures with faults, in the simulator.

Prints one JSON object.  Payloads are small (20-250 KB originals, 300-byte
thumbnails, seeded) and link bandwidth is scaled down by about the same factor
(50 KB/s where real Wi-Fi moves ~5 MB/s of ~12 MB originals), so transfer
times stay realistic while no 12 MB byte strings are built.  The cheap
invariants (capacity of every card a step changed, no picture lost for every
picture that lost a copy) run after every step; the full rescan of every card
and picture runs every ``FULL_CHECK_EVERY`` steps and at the end.

An event is one of the world's own timed events taken off its heap: a frame
delivered, a lane freed with more to send, a node's timer, a capture, a
connect, a fault.  Cancelled timers are not counted; ``events_by_kind`` says
what the count is made of.  Node calls and frame slices are not events.

    .venv/bin/python bench/sim.py [--seed S] [--cameras N] [--pictures M] [--breakdown]

``--breakdown`` times every call into the node, the card and the invariants
(exclusive of nested calls) and adds ``us_per_event`` by component; the
timers add about a microsecond a call, so its own totals run a little slow.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protocol.node import Node
from sim import invariants
from sim import report as rp
from sim import wire as wire_module
from sim.agenda import KIND_NAMES
from sim.devices import AuditedStore
from sim.memstore import MemoryStore
from sim.scenario import generate
from sim.world import World

TARGET_EVENTS_PER_S = 100_000
TARGET_SPEEDUP = 1_000
FULL_CHECK_EVERY = 5_000


class Breakdown:
    """Exclusive wall time per component: a timed call's nested timed calls are not its own."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._stack: list[float] = []  # per open call: time its nested calls took

    def wrap(self, component: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        clock = time.perf_counter
        stack = self._stack
        seconds, calls = self.seconds, self.calls
        seconds.setdefault(component, 0.0)
        calls.setdefault(component, 0)

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            stack.append(0.0)
            start = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                took = clock() - start
                nested = stack.pop()
                seconds[component] += took - nested
                calls[component] += 1
                if stack:
                    stack[-1] += took

        return timed

    def overhead(self) -> float:
        """Seconds one timed call adds (measured on a call that does nothing)."""
        bare = self.__class__()

        def nothing() -> None:
            return None

        timed = bare.wrap("calibration", nothing)
        rounds = 200_000
        start = time.perf_counter()
        for _ in range(rounds):
            nothing()
        plain = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(rounds):
            timed()
        return max(0.0, (time.perf_counter() - start - plain) / rounds)

    def install(self) -> None:
        """Time the node's public calls, every card call, the invariants and the wire tap."""
        for name in (
            "receive_data", "next_frame", "tick", "next_deadline", "captured", "connected",
            "disconnected", "sending_peers", "may_send", "events", "read_out", "collect",
        ):
            setattr(Node, name, self.wrap(f"protocol.node.{name}", getattr(Node, name)))
        for cls in (MemoryStore, AuditedStore):
            for name, fn in list(vars(cls).items()):
                if callable(fn) and not name.startswith("__"):
                    setattr(cls, name, self.wrap(f"sim.memstore.{name}", fn))
        for name in ("check_step", "check_accept", "readout_chunk", "readout_done", "check_quiet"):
            setattr(invariants, name, self.wrap("sim.invariants", getattr(invariants, name)))
        wire_module.Wire.observe = self.wrap(  # type: ignore[method-assign]
            "sim.wire tap", wire_module.Wire.observe
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cameras", type=int, default=10)
    parser.add_argument("--pictures", type=int, default=300)
    parser.add_argument("--desks", type=int, default=1)
    parser.add_argument("--breakdown", action="store_true", help="time each component")
    args = parser.parse_args()
    breakdown = Breakdown() if args.breakdown else None
    if breakdown is not None:
        breakdown.install()
    scenario = generate(
        args.seed,
        cameras=args.cameras,
        pictures=args.pictures,
        desks=args.desks,
        faults=("crash", "partition", "breaks", "full", "vanish", "readout"),
        desk_capacity=2_000_000_000,  # the editor's laptop takes every original of the day
    )
    world = World(scenario, full_check_every=FULL_CHECK_EVERY)
    start, cpu_start = time.perf_counter(), time.process_time()
    world.run()
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    report = rp.build(world)
    events_per_s = report.events / wall
    speedup = report.virtual_seconds / wall
    extra: dict[str, Any] = {}
    if breakdown is not None:
        timed = sum(breakdown.seconds.values())
        timers = breakdown.overhead() * sum(breakdown.calls.values())
        per_event = {name: round(1e6 * s / report.events, 2) for name, s in breakdown.seconds.items()}
        per_event["sim.world (the rest: heap, links, trace, bookkeeping)"] = round(
            1e6 * (wall - timed - timers) / report.events, 2
        )
        # What the timers themselves cost, split between the timed calls and their callers.
        per_event["timers (not in an uninstrumented run)"] = round(1e6 * timers / report.events, 2)
        extra["us_per_event"] = per_event
        extra["calls_per_event"] = {
            name: round(n / report.events, 2) for name, n in breakdown.calls.items()
        }
    print(
        json.dumps(
            {
                "cameras": args.cameras,
                "pictures_per_camera": args.pictures,
                "desks": args.desks,
                "seed": args.seed,
                "payloads": f"originals {scenario.picture_min}-{scenario.picture_max} B, "
                f"thumbnails {scenario.thumbnail} B, links {scenario.bandwidth} B/s, "
                f"{scenario.latency * 1000:.0f} ms",
                "events": report.events,
                "events_by_kind": dict(zip(KIND_NAMES, world.metrics.by_kind, strict=True)),
                "ticks_cancelled": world.metrics.counters.get("ticks.cancelled", 0),
                # What the frames were: keepalives and offers of thumbnails the receiver
                # already holds are protocol choices that the simulator pays for per frame.
                "frames_by_tag": {
                    name[5:]: n
                    for name, n in sorted(world.metrics.counters.items())
                    if name.startswith("wire.")
                },
                "frames": report.frames,
                "bytes_moved": report.bytes_moved,
                "virtual_seconds": round(report.virtual_seconds, 1),
                "wall_seconds": round(wall, 3),
                # The machine is shared: CPU seconds show what the run itself cost.
                "cpu_seconds": round(cpu, 3),
                "events_per_cpu_s": round(report.events / cpu),
                "sim_seconds_per_cpu_second": round(report.virtual_seconds / cpu, 1),
                "events_per_s": round(events_per_s),
                "sim_seconds_per_real_second": round(speedup, 1),
                "target_events_per_s": TARGET_EVENTS_PER_S,
                "target_sim_seconds_per_real_second": TARGET_SPEEDUP,
                "events_per_s_met": events_per_s >= TARGET_EVENTS_PER_S,
                "sim_seconds_per_real_second_met": speedup >= TARGET_SPEEDUP,
                "invariants_held": report.ok,
                "violation": report.violation,
                "dispersals": report.dispersals,
                "collections": report.collections,
                "originals_completed": report.originals_completed,
                "thumbnail_p50": report.thumbnail_p50,
                "thumbnail_p99": report.thumbnail_p99,
                "trace_hash": report.trace_hash,
                **extra,
            },
            sort_keys=True,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
