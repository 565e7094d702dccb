"""A simulation scenario as plain data: who is in the mesh, what they shoot, and what goes wrong when.

A ``Scenario`` is frozen and serialises to a short JSON string, so that a
failure found by Hypothesis (or by hand) replays identically with
``cammesh sim --replay``.  Everything not written here (picture bytes, clock
skews, slice points) is derived from ``seed``.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from protocol.errors import CammeshError

# Fault kinds (the ``kind`` of a Step).  Device numbers: cameras first, then desks.
CRASH = "crash"  # device a crashes, restarts after ``duration``
BREAK = "break"  # the connection between a and b breaks (both reconnect later)
PARTITION = "partition"  # devices whose bit is set in ``a`` (a mask) lose the others, heal after ``duration``
VANISH = "vanish"  # device a leaves discovery (out of range) for ``duration``
READOUT = "readout"  # device a reads picture number b out (claims 8, 9); waits ``duration`` if > 0
COLLECT = "collect"  # device a collects back every original it dispersed (claims 10, 20)
REFUSE = "refuse"  # device a refuses picture b ("not necessary", FIG. 13B)
REQUEST = "request"  # device a asks for picture b's original first (FIG. 10, S63)
LOSE = "lose"  # device a is lost for good (never restarts); every live owner repairs it away
MARK = "mark"  # device a's editor marks picture b (issue 19; the marks drawn from the step itself)

KINDS = (CRASH, BREAK, PARTITION, VANISH, READOUT, COLLECT, REFUSE, REQUEST, LOSE, MARK)
FAULT_FAMILIES = ("crash", "partition", "breaks", "full", "vanish", "readout", "lying", "marks")

# The lies a lying peer (``Scenario.liar``) may tell; sim/lying.py tells them.
LIES = (
    "stored-early",  # STORED while the owner is still sending (the premature-stored guard)
    "stored-wrong-digest",  # STORED naming another digest than the one it was sent
    "stored-never-sent",  # STORED for a picture nobody sent it
    "corrupt-chunk",  # a chunk whose bytes do not hash to the promised digest
    "room",  # a Hello or reject advertising room it has not, or none when it has
    "accept",  # an accept reserving too little, a reject turned accept, an accept turned reject
    "other-picture",  # a stream (a collection, a read-out) headed with another picture's size
    "partial",  # a stream whose last chunk is left out: a stale, partial copy
    "replay",  # an answer sent twice
    "out-of-order",  # a second Hello or Catalog, or a chunk whose header was left out
)


class ScenarioError(CammeshError):
    """A scenario (usually a --replay file) is malformed; the message names the field."""


@dataclass(frozen=True, slots=True)
class Step:
    """One scheduled fault or user action at virtual time ``at`` (seconds)."""

    at: float
    kind: str
    a: int = 0
    b: int = 0
    duration: float = 0.0


@dataclass(frozen=True, slots=True)
class Scenario:
    """Everything a run depends on; the same scenario gives the same trace, byte for byte.

    Sizes are bytes, bandwidth bytes per virtual second, times virtual seconds.
    Picture payloads are small (``picture_min``..``picture_max``) and bandwidth is
    scaled down by the same factor a real 12 MB original would be, so that
    transfer times stay realistic while the simulator stays fast.
    """

    seed: int = 0
    cameras: int = 2
    desks: int = 1
    pictures: int = 4  # per camera
    interval: float = 20.0  # mean seconds between two captures of one camera
    picture_min: int = 20_000
    picture_max: int = 250_000
    thumbnail: int = 300  # bytes of each (fake) thumbnail
    camera_capacity: int = 10_000_000
    desk_capacity: int = 100_000_000
    bandwidth: int = 50_000  # bytes/s of one direction of one link
    latency: float = 0.005
    skew: float = 30.0  # device clocks differ by up to this many seconds
    chunk_size: int = 64 * 1024
    high_water: float = 0.9
    # What each role pulls from its peers (protocol.config.Policy values): desks want
    # every original, cameras only thumbnails, so dispersal has somewhere to go.
    camera_policy: str = "thumbnails"
    desk_policy: str = "all"
    settle: float = 900.0  # quiet time after the last capture and fault
    steps: tuple[Step, ...] = field(default_factory=tuple)
    # A lying peer: device ``liar`` runs the real node, but tells ``lies`` (LIES) on the
    # wire.  No lies, no liar: the JSON then leaves both out, as before there were any.
    liar: int = 0
    lies: tuple[str, ...] = ()
    # Holders each original must have before its owner frees it (NodeConfig.replicas).  With
    # two or more, a liar's copy is never counted for an honest owner's picture (the honest
    # copy invariant); the JSON leaves it out at 1, as before it existed.
    replicas: int = 1
    # Each camera's picture keys wrapped for every desk, with the thumbnail (issue 7, FIG. 20);
    # the JSON leaves it out when False, as before it existed.
    wrap_keys: bool = False
    # The editor's marks travel (NodeConfig.share_marks, issue 19) and MARK steps mark
    # pictures; the JSON leaves it out when False, as before marks travelled.
    marks: bool = False

    def devices(self) -> int:
        return self.cameras + self.desks

    def end(self) -> float:
        """Virtual time at which the run stops: after every capture and fault, plus settle."""
        last = self.pictures * self.interval * 2
        for step in self.steps:
            last = max(last, step.at + step.duration)
        return last + self.settle

    def to_json(self) -> str:
        """A short, canonical JSON form (sorted keys, steps as lists)."""
        data = asdict(self)
        data["steps"] = [[s.at, s.kind, s.a, s.b, s.duration] for s in self.steps]
        if not self.lies:
            del data["liar"], data["lies"]
        if self.replicas == 1:
            del data["replicas"]
        if not self.wrap_keys:
            del data["wrap_keys"]
        if not self.marks:
            del data["marks"]
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Scenario:
        """Parse ``to_json`` output; raises ScenarioError naming what is wrong."""
        try:
            data: dict[str, Any] = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ScenarioError(f"scenario is not JSON ({exc}); pass a file or a JSON string") from exc
        if not isinstance(data, dict):
            raise ScenarioError("scenario JSON must be an object")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ScenarioError(f"unknown scenario fields {unknown}; known: {sorted(known)}")
        try:
            steps = tuple(
                Step(float(at), str(kind), int(a), int(b), float(dur))
                for at, kind, a, b, dur in data.pop("steps", [])
            )
        except (TypeError, ValueError) as exc:
            raise ScenarioError(f"steps must be [at, kind, a, b, duration] lists ({exc})") from exc
        try:
            lies = tuple(str(lie) for lie in data.pop("lies", ()))
        except TypeError as exc:
            raise ScenarioError(f"lies must be a list of names ({exc})") from exc
        scenario = cls(**data, steps=steps, lies=lies)
        scenario.check()
        return scenario

    def check(self) -> None:
        """Raise ScenarioError if a field is out of range."""
        if self.cameras < 1 or self.desks < 0 or self.devices() > 64:
            raise ScenarioError("need 1+ cameras, 0+ desks, at most 64 devices")
        if self.pictures < 0 or not 0 < self.picture_min <= self.picture_max:
            raise ScenarioError("pictures must be >= 0 and 0 < picture_min <= picture_max")
        if self.bandwidth <= 0 or self.latency < 0 or self.interval <= 0:
            raise ScenarioError("bandwidth and interval must be positive, latency >= 0")
        policies = ("thumbnails", "requested", "all")
        if self.camera_policy not in policies or self.desk_policy not in policies:
            raise ScenarioError(f"camera_policy and desk_policy must be one of {list(policies)}")
        unknown = sorted(set(self.lies) - set(LIES))
        if unknown:
            raise ScenarioError(f"unknown lies {unknown}; known: {list(LIES)}")
        if not 1 <= self.replicas < max(2, self.devices()):
            raise ScenarioError("replicas must be at least 1 and below the number of devices")
        if self.lies and not 0 <= self.liar < self.devices():
            raise ScenarioError(f"liar {self.liar} is not a device of the mesh")
        for step in self.steps:
            if step.kind not in KINDS:
                raise ScenarioError(f"unknown step kind {step.kind!r}; known: {list(KINDS)}")
            if step.at < 0 or step.duration < 0:
                raise ScenarioError(f"step {step} has a negative time")
            if step.kind in (CRASH, VANISH, READOUT, COLLECT, REFUSE, REQUEST, BREAK, LOSE, MARK) and not (
                0 <= step.a < self.devices()
            ):
                raise ScenarioError(f"step {step} names device {step.a}, not in the mesh")


def generate(
    seed: int,
    *,
    cameras: int,
    pictures: int,
    desks: int = 1,
    faults: tuple[str, ...] = (),
    **overrides: Any,
) -> Scenario:
    """A seeded scenario with faults of the named families (FAULT_FAMILIES) spread over the run."""
    unknown = sorted(set(faults) - set(FAULT_FAMILIES))
    if unknown:
        raise ScenarioError(f"unknown fault families {unknown}; known: {list(FAULT_FAMILIES)}")
    rng = random.Random(f"scenario:{seed}")
    base = Scenario(seed=seed, cameras=cameras, desks=desks, pictures=pictures)
    base = replace(base, **overrides)
    if "full" in faults:
        # Cards that hold about a third of one camera's pictures: dispersal must run.  The
        # room above the high-water mark still takes a couple of pictures, as on a real
        # card (GBs against MBs), so the camera keeps shooting while it disperses.
        mean = (base.picture_min + base.picture_max) // 2
        base = replace(
            base,
            camera_capacity=max(base.picture_max * 8, mean * pictures // 3),
            high_water=min(base.high_water, 0.7),
        )
    n = base.devices()
    span = max(1.0, pictures * base.interval)
    steps: list[Step] = []
    count = max(1, pictures // 10)

    def when() -> float:
        return round(rng.uniform(0, span), 3)

    for family in faults:
        for _ in range(count):
            if family == "crash":
                steps.append(Step(when(), CRASH, rng.randrange(n), 0, round(rng.uniform(5, 120), 3)))
            elif family == "breaks" and n > 1:
                a, b = rng.sample(range(n), 2)
                steps.append(Step(when(), BREAK, a, b))
            elif family == "partition" and n > 1:
                mask = rng.randrange(1, (1 << n) - 1)
                steps.append(Step(when(), PARTITION, mask, 0, round(rng.uniform(10, 300), 3)))
            elif family == "vanish":
                steps.append(Step(when(), VANISH, rng.randrange(n), 0, round(rng.uniform(5, 200), 3)))
            elif family == "readout":
                steps.append(Step(when(), READOUT, rng.randrange(n), rng.randrange(cameras * pictures or 1)))
    if "full" in faults:
        for cam in range(cameras):
            steps.append(Step(round(span + 60.0 + cam, 3), COLLECT, cam))
    if "marks" in faults:
        # Its own random, as the liar's: the other families draw what they drew before.
        marks_rng = random.Random(f"marks:{seed}")
        for _ in range(max(2, pictures // 2)):
            at = round(marks_rng.uniform(0, span * 1.5), 3)
            steps.append(Step(at, MARK, marks_rng.randrange(n), marks_rng.randrange(cameras * pictures or 1)))
        base = replace(base, marks=True)
    steps.sort(key=lambda s: (s.at, s.kind, s.a, s.b))
    if "lying" in faults:
        # Its own random: the draws of every other family stay as they were.
        liar = random.Random(f"liar:{seed}").randrange(n)
        # Two copies where two desks have room for them: a lying holder then never holds the
        # only copy of an honest owner's picture.
        replicas = 2 if base.desks >= 2 else 1
        return replace(base, steps=tuple(steps), liar=liar, lies=LIES, replicas=replicas)
    return replace(base, steps=tuple(steps))
