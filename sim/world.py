"""The simulated world: devices, links and faults on one virtual clock, from one seed.

Single-threaded and deterministic: a heap of timed events whose ties are
broken by an insertion counter, every random choice from a ``random.Random``
derived from the scenario's seed, and no iteration over unsorted sets of
strings.  Every delivered frame and every node event goes into a running
SHA-256 (the trace hash), so the same scenario gives the same hash, byte for
byte, in any process.  Invariants (sim/invariants.py) run after every step,
on what the step changed.

Cost is per frame, not per device: a node is polled only for peers its
``sending_peers()`` names, a lane gets a LANE_FREE event only when its sender
may have more (both in sim/wire.py, which carries the frames), and a node's
timer is one TICK at ``next_deadline()``.  The timed events are sim/agenda.py's;
what each fault step does is sim/faults.py's.
"""

from __future__ import annotations

import hashlib
import heapq
import random
import struct
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from protocol import events as ev
from protocol.messages import Role
from protocol.store import CardFullError, Stamped
from sim import faults, invariants, keys, planted
from sim.agenda import CAPTURE, CONNECT, HEAL, REAPPEAR, RESTART, STEP, TICK, Agenda
from sim.devices import AuditedStore, Device, device_id_for, make_config
from sim.links import NetworkLink, make_link
from sim.lying import Liar
from sim.record import Metrics, Picture, canon
from sim.scenario import Scenario, Step
from sim.wire import Wire

_FOLLOW_UP_KIND = {"restart": RESTART, "heal": HEAL, "reappear": REAPPEAR}  # faults.FollowUp

RECONNECT_MIN = 1.0  # seconds before a broken link is tried again
RECONNECT_MAX = 4.0
QUIET_GRACE = 60.0  # virtual seconds a full run waits at its end for idle links
SPIN_LIMIT = 20  # ticks in a row that leave a deadline in the past


_DELIVERY = struct.Struct("<cdHHI")  # b"D", time, from, to, frame length
_PICTURE_BLOCK = 4099  # a prime


class World:
    """Run one scenario; ``run()`` returns when the scenario ends or an invariant breaks."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        planted_bugs: frozenset[str] = frozenset(),
        full_check_every: int = 100,
        keep_trace: bool = False,
        judge_cut_offs: bool = True,
    ) -> None:
        scenario.check()
        self.scenario = scenario
        self.t = 0.0
        self.rng = random.Random(f"world:{scenario.seed}")
        self.full_check_every = full_check_every
        self.metrics = Metrics()
        self.pictures: list[Picture] = []
        self.by_id: dict[str, Picture] = {}
        self.violation: invariants.Violation | None = None
        self.verified: dict[tuple[int, str, str], bytes] = {}
        self.holder_hint: dict[str, int] = {}  # image id -> the card that last held a verified copy
        # Every mark an editor made (MARK steps), merged by last writer wins: after quiet,
        # every card must hold exactly these (invariants.marks_agree).
        self.marks_made: dict[str, dict[str, Stamped]] = {}
        self.trace_lines: list[str] | None = [] if keep_trace else None
        self._trace = hashlib.sha256()
        self.agenda = Agenda()
        self.dirty: set[int] = set()  # cards changed since the invariants last looked
        self.wire = Wire(self)
        # The devices on one side of a network partition, as a bit mask, or None when whole.
        # Public: the fault catalogue (sim/faults.py) sets and clears it; can_connect reads it.
        self.partition: int | None = None
        n = scenario.devices()
        parts = planted.parts_for(planted_bugs)
        self.devices: list[Device] = []
        for i in range(n):
            role = Role.CAMERA if i < scenario.cameras else Role.DESK
            name = f"{role.value}{i}"
            did = device_id_for(scenario.seed, i)
            capacity = scenario.camera_capacity if role is Role.CAMERA else scenario.desk_capacity
            config = make_config(
                name,
                role,
                chunk_size=scenario.chunk_size,
                high_water=scenario.high_water,
                policy=scenario.camera_policy if role is Role.CAMERA else scenario.desk_policy,
                replicas=scenario.replicas,
                sealer=keys.sealer_for(scenario.seed, i) if scenario.wrap_keys else None,
                share_marks=scenario.marks,
            )
            self.devices.append(
                Device(
                    index=i,
                    name=name,
                    device_id=did,
                    role=role,
                    store=AuditedStore(did, capacity, index=i, dirty=self.dirty),
                    config=config,
                    rng=random.Random(f"device:{scenario.seed}:{i}"),
                    skew=self.rng.uniform(-scenario.skew, scenario.skew),
                    drift=self.rng.uniform(-1e-4, 1e-4),
                    parts=parts,
                )
            )
        self.index_of = {d.device_id: d.index for d in self.devices}
        self.connections: dict[tuple[int, int], NetworkLink] = {}
        self.links_of: list[list[NetworkLink]] = [[] for _ in range(n)]
        # conn_from[a][b]: the connection between a and b (None on the diagonal).
        self.conn_from: list[list[NetworkLink | None]] = [[] for _ in range(n)]
        for a in range(n):
            for b in range(a + 1, n):
                conn = make_link(a, b, scenario.bandwidth, scenario.latency)
                self.connections[(a, b)] = conn
                self.links_of[a].append(conn)
                self.links_of[b].append(conn)
        for a in range(n):
            self.conn_from[a] = [
                self.connections[(a, b) if a < b else (b, a)] if a != b else None
                for b in range(n)
            ]
        self._picture_rngs = [random.Random(f"pictures:{scenario.seed}:{c}") for c in range(n)]
        self._handlers: list[Callable[[int, int, Any], None]] = [
            self._on_capture,
            self.wire.on_deliver,
            self.wire.on_lane_free,
            self._on_tick,
            self._on_connect,
            self._on_step,
            self._on_restart,
            self._on_heal,
            self._on_reappear,
            self.wire.on_lie,
        ]
        # A lying peer, only when the scenario names lies: its random is its own, so a
        # scenario without lies draws and traces exactly what it did before lies existed.
        self.liar = Liar(self, scenario.liar, scenario.lies) if scenario.lies else None
        # False: a lie an honest node should have refused at once is let pass unjudged, so
        # that a test sees the harm it does (a picture lost, a wrong read-out) instead.
        self.judge_cut_offs = judge_cut_offs
        for dev in self.devices:
            dev.boot()
        self.last_capture_at = 0.0
        for c in range(scenario.cameras):
            at = 0.0
            for k in range(scenario.pictures):
                at += self.rng.expovariate(1.0 / scenario.interval)
                self.push(at, CAPTURE, c, k, None)
            self.last_capture_at = max(self.last_capture_at, at)
        self.steps: list[Step] = list(scenario.steps)
        for i, step in enumerate(self.steps):
            self.push(step.at, STEP, i, 0, None)
        for key in sorted(self.connections):
            self.push(self.rng.uniform(0.0, 0.5), CONNECT, key[0], key[1], None)

    # --- the loop ------------------------------------------------------------------

    def push(self, at: float, kind: int, a: int, b: int, payload: Any) -> None:
        self.agenda.push(at, kind, a, b, payload)

    def run(self, until: float | None = None) -> World:
        """Process events until ``until`` (default: the scenario's end) or a violation.

        A full run then waits (at most QUIET_GRACE virtual seconds) for the links to
        fall idle and checks the after-quiet invariants.
        """
        end = self.end() if until is None else until
        self._run_until(end, stop_when_quiet=False)
        if self.violation is None and until is None:
            self._run_until(end + QUIET_GRACE, stop_when_quiet=True)
            self.t = max(self.t, end)
            self._check_step(full=True)
            if self.violation is None:
                if self.quiet():
                    invariants.check_quiet(self)
                    invariants.marks_agree(self)
                else:
                    self.metrics.count("end.not_quiet")
        return self

    def _run_until(self, end: float, *, stop_when_quiet: bool) -> None:
        heap = self.agenda.heap
        handlers = self._handlers
        metrics = self.metrics
        every = self.full_check_every
        dirty = self.dirty
        pop = heapq.heappop
        by_kind = metrics.by_kind
        while heap and self.violation is None:
            if heap[0][0] > end or (stop_when_quiet and self.quiet()):
                break
            at, _, kind, a, b, payload = pop(heap)
            self.t = at
            metrics.events += 1
            by_kind[kind] += 1
            handlers[kind](a, b, payload)
            if self.violation is None:
                full = every > 0 and metrics.events % every == 0
                if full or dirty:
                    invariants.check_step(self, full=full)

    def end(self) -> float:
        """When a full run stops: the scenario's end, or settle after a late last capture."""
        scenario = replace(self.scenario, steps=tuple(self.steps))
        return max(scenario.end(), self.last_capture_at + scenario.settle)

    def inject(self, step: Step) -> None:
        """Schedule one more step (the rule-based state machine adds them as it goes)."""
        self.steps.append(step)
        self.push(max(step.at, self.t), STEP, len(self.steps) - 1, 0, None)

    def as_scenario(self) -> Scenario:
        """The scenario this run amounts to, injected steps included (for --replay)."""
        return replace(self.scenario, steps=tuple(self.steps))

    @property
    def trace_hash(self) -> str:
        return self._trace.hexdigest()

    def trace(self, line: str, blob: bytes | None = None) -> None:
        data = line.encode()
        self._trace.update(data)
        if blob is not None:
            self._trace.update(blob)
        if self.trace_lines is not None:
            self.trace_lines.append(line)

    def trace_delivery(self, t: float, src: int, dst: int, frame: bytes) -> None:
        """A frame delivered: into the hash as a packed record (formatting the time as text
        costs more than the rest of the bookkeeping); the kept lines, for reading, say the same."""
        trace = self._trace
        trace.update(_DELIVERY.pack(b"D", t, src, dst, len(frame)))
        trace.update(frame)
        if self.trace_lines is not None:
            self.trace_lines.append(f"{t!r} D {src} {dst} {len(frame)}\n")

    def fail(self, rule: str, detail: str) -> None:
        if self.violation is None:
            self.violation = invariants.Violation(rule, detail, self.t, self.metrics.events)
            self.trace(f"{self.t!r} VIOLATION {rule} {detail}\n")

    # --- node calls: each is followed by draining events, rescheduling its timer, pumping ---

    def call(self, dev: Device, what: str, fn: Callable[[], Any]) -> bool:
        """Run one node call; a node raising anything is a violation (a crashed node)."""
        try:
            fn()
        except Exception as exc:  # any exception out of the node is a bug the suite reports
            self.fail("node-raised", f"{dev.name}.{what}: {type(exc).__name__}: {exc}")
            return False
        self.after_call(dev)
        return True

    def after_call(self, dev: Device, *, ticked: bool = False) -> None:
        """After any call into ``dev``'s node: its events, its next tick, its frames."""
        node = dev.node
        if node is None:
            return
        events = node.events()
        if events:
            for event in events:
                self._on_node_event(dev, event)
        deadline = node.next_deadline()
        if deadline is not None:
            at = dev.virtual(deadline)
            # A node that still wants a tick right after one gets a small step, not a spin.
            t = self.t + 0.01 if ticked else self.t
            if at < t:
                at = t
            tick_at = dev.tick_at
            if tick_at is None or at < tick_at:
                dev.tick_at = at
                self.agenda.push(at, TICK, dev.index, dev.incarnation, at)
        self.wire.pump(dev)

    def _on_node_event(self, dev: Device, event: ev.NodeEvent) -> None:
        name = type(event).__name__
        self.metrics.count(f"event.{name}")
        self.trace(f"{self.t!r} E {dev.index} {canon(event)}\n")
        if isinstance(event, ev.ThumbnailArrived):
            pic = self.by_id.get(event.image_id)
            if pic is not None:
                self.metrics.thumbnail_latency.append(self.t - pic.captured_at)
                self.metrics.thumbnail_arrivals.append((self.t, dev.index, pic.number))
        elif isinstance(event, ev.OriginalArrived):
            pic = self.by_id.get(event.image_id)
            if pic is not None:
                self.metrics.original_arrivals.append((self.t, dev.index, pic.number))
        elif isinstance(event, ev.ReadOutChunk):
            invariants.readout_chunk(self, dev, event)
        elif isinstance(event, ev.ReadOutDone):
            invariants.readout_done(self, dev, event)
        elif isinstance(event, ev.ReadOutFailed):
            dev.readouts.pop(event.image_id, None)
            invariants.readout_failed(self, dev, event)
        elif isinstance(event, ev.PeerTimedOut):
            peer = self.index_of.get(event.peer)
            if peer is not None:
                self.break_link(dev.index, peer, "peer timed out")

    # --- handlers --------------------------------------------------------------------

    def _on_capture(self, cam: int, number: int, _: Any) -> None:
        dev = self.devices[cam]
        if dev.node is None:  # the camera is off: the photographer shoots after it restarts
            self.push(self.t + 1.0, CAPTURE, cam, number, None)
            return
        prng = self._picture_rngs[cam]
        size = prng.randint(self.scenario.picture_min, self.scenario.picture_max)
        # Seeded bytes, unique per picture: a random block repeated (random bytes all
        # through cost a millisecond a picture).  The block's length is prime, so no two
        # chunks at different offsets (multiples of a power of two) hold the same bytes:
        # a chunk sent from the wrong offset still breaks the hash check.
        data = (prng.randbytes(_PICTURE_BLOCK) * (size // _PICTURE_BLOCK + 1))[:size]
        now = dev.clock(self.t)
        try:
            record = dev.store.add_local(
                data,
                name=f"{dev.name}-{number:04d}.jpg",
                now=now,
                capture_time=now,
                thumbnail=prng.randbytes(self.scenario.thumbnail),
            )
        except CardFullError:
            self.metrics.count("capture.card_full")
            self.trace(f"{self.t!r} C {cam} {number} full\n")
            return
        pic = Picture(len(self.pictures), cam, record.image_id, len(data), self.t)
        self.pictures.append(pic)
        self.by_id[pic.image_id] = pic
        self.metrics.count("captures")
        self.trace(f"{self.t!r} C {cam} {number} {record.image_id}\n")
        self.call(dev, "captured", lambda: dev.node.captured(record.image_id, now))  # type: ignore[union-attr]

    def _on_tick(self, index: int, incarnation: int, at: float) -> None:
        dev = self.devices[index]
        if dev.node is None or dev.incarnation != incarnation or dev.tick_at != at:
            # Stale: superseded by an earlier deadline, or the node crashed since.  A
            # cancelled timer is not an event of the world: it is not counted as one.
            self.metrics.events -= 1
            self.metrics.by_kind[TICK] -= 1
            self.metrics.count("ticks.cancelled")
            return
        dev.tick_at = None
        node = dev.node
        now = dev.clock(self.t)
        try:
            node.tick(now)
            deadline = node.next_deadline()
        except Exception as exc:
            self.fail("node-raised", f"{dev.name}.tick: {type(exc).__name__}: {exc}")
            return
        # A tick must deal with everything due: a deadline still in the past right after
        # one means a runtime honouring it would spin.
        if deadline is not None and deadline <= now:
            dev.spins += 1
            if dev.spins >= SPIN_LIMIT:
                self.fail(
                    "timer-spin",
                    f"{dev.name}.next_deadline() is still {now - deadline:.3f}s in the past "
                    f"after {dev.spins} ticks in a row",
                )
                return
        else:
            dev.spins = 0
        self.after_call(dev, ticked=True)

    def can_connect(self, a: int, b: int) -> bool:
        da, db = self.devices[a], self.devices[b]
        if not (da.up and db.up and da.discoverable and db.discoverable):
            return False
        if self.partition is not None:
            return bool(self.partition >> a & 1) == bool(self.partition >> b & 1)
        return True

    def _on_connect(self, a: int, b: int, _: Any) -> None:
        conn = self.connections[(a, b)]
        conn.reconnect_pending = False
        if conn.up or not self.can_connect(a, b):
            return
        conn.up = True
        conn.epoch += 1
        self.metrics.count("connects")
        self.trace(f"{self.t!r} UP {a} {b}\n")
        da, db = self.devices[a], self.devices[b]
        assert da.node is not None and db.node is not None
        if not self.call(da, "connected", lambda: da.node.connected(db.device_id, da.clock(self.t), key_recipient=keys.recipient(da, db))):  # type: ignore[union-attr]
            return
        self.call(db, "connected", lambda: db.node.connected(da.device_id, db.clock(self.t), key_recipient=keys.recipient(db, da)))  # type: ignore[union-attr]

    def schedule_connect(self, a: int, b: int) -> None:
        key = (a, b) if a < b else (b, a)
        conn = self.connections[key]
        if conn.up or conn.reconnect_pending:
            return
        conn.reconnect_pending = True
        self.push(self.t + self.rng.uniform(RECONNECT_MIN, RECONNECT_MAX), CONNECT, key[0], key[1], None)

    def break_link(self, a: int, b: int, reason: str) -> None:
        """Close the connection between a and b; both live ends are told; it is retried later."""
        key = (a, b) if a < b else (b, a)
        conn = self.connections[key]
        if not conn.up:
            return
        conn.up = False
        conn.epoch += 1
        for lane in conn.lanes.values():
            lane.reset()
        self.metrics.count("breaks")
        self.trace(f"{self.t!r} DOWN {key[0]} {key[1]} {reason}\n")
        for end, other in ((key[0], key[1]), (key[1], key[0])):
            dev, peer = self.devices[end], self.devices[other]
            if dev.node is not None:
                node = dev.node
                self.call(dev, "disconnected", lambda n=node, d=dev, p=peer: n.disconnected(p.device_id, d.clock(self.t), reason))  # type: ignore[misc]
        self.schedule_connect(a, b)

    def _on_step(self, index: int, _b: int, _: Any) -> None:
        then = faults.apply(self, self.steps[index])
        if then is not None:
            self.push(then.at, _FOLLOW_UP_KIND[then.kind], then.subject, 0, None)

    def _on_restart(self, index: int, _b: int, _: Any) -> None:
        faults.restart(self, index)

    def _on_heal(self, mask: int, _b: int, _: Any) -> None:
        faults.heal(self, mask)

    def _on_reappear(self, index: int, _b: int, _: Any) -> None:
        faults.reappear(self, index)

    # --- invariants ------------------------------------------------------------------------

    def _check_step(self, *, full: bool) -> None:
        invariants.check_step(self, full=full)

    def quiet(self) -> bool:
        """Nothing in flight: every device up, every link idle, no read-out under way."""
        if self.wire.in_flight:
            return False
        return all(d.node is not None and not d.readouts for d in self.devices)
