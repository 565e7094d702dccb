"""Golden traces: the trace hash of each pinned simulator run (issue 15, Build step 1).

The node's redesign must keep behaviour byte for byte: every run here, planted-bug
runs and the widened scenarios (two replicas, repair after a holder is lost, a
read-out that waits, picture keys wrapped for a desk) included, must give the hash
in tests/sim/golden_traces.json.  A hash that changes is a behaviour change, and the
commit that changes it says why and rewrites the file:

    python -m tests.sim.golden --check        # every run (about 15 s of CPU)
    python -m tests.sim.golden --write        # after a behaviour change, said why
    python -m tests.sim.golden --check NAME   # one run

tests/sim/test_golden_traces.py checks the runs marked ``ci`` on every test run.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from sim import scenario as sc
from sim.world import World
from tests.sim.test_regressions import FOUND

GOLDEN = Path(__file__).with_name("golden_traces.json")

FAMILIES = ("crash", "partition", "breaks", "full", "vanish", "readout")


@dataclass(frozen=True, slots=True)
class Run:
    """One pinned run: a scenario, the bugs planted in it, and whether CI runs it."""

    scenario: sc.Scenario
    bugs: frozenset[str] = frozenset()
    ci: bool = True


def _sorted(steps: tuple[sc.Step, ...]) -> tuple[sc.Step, ...]:
    return tuple(sorted(steps, key=lambda s: (s.at, s.kind, s.a, s.b)))


def _full(seed: int, *, desks: int, replicas: int = 1) -> sc.Scenario:
    return sc.generate(seed, cameras=2, pictures=20, desks=desks, faults=("full",), replicas=replicas)


def _repair(seed: int) -> sc.Scenario:
    """Two replicas on two desks; the first desk is lost for good late in the shoot."""
    base = _full(seed, desks=2, replicas=2)
    lose = sc.Step(20 * base.interval * 0.8, sc.LOSE, 2)
    return replace(base, steps=_sorted((*base.steps, lose)))


def _waiting_readout(seed: int) -> sc.Scenario:
    """The camera reads out dispersed pictures while their holder (the desk) is away."""
    base = _full(seed, desks=1)
    mid = 20 * base.interval * 0.5
    reads = tuple(sc.Step(mid + 20 * i, sc.READOUT, 0, i, 200.0) for i in range(4))
    return replace(base, steps=_sorted((*base.steps, *reads, sc.Step(mid, sc.VANISH, 2, 0, 100.0))))


def _wrapped_keys(seed: int) -> sc.Scenario:
    """Keys wrapped for the desk, which reads out pictures it holds for the cameras."""
    base = _full(seed, desks=1)
    at = 20 * base.interval * 0.6
    reads = tuple(sc.Step(at + 10 * i, sc.READOUT, 2, i, 0.0) for i in range(4))
    return replace(base, wrap_keys=True, steps=_sorted((*base.steps, *reads)))


def _user_actions(seed: int) -> sc.Scenario:
    """Requests, refusals, read-outs and collections under each desk policy, cards filling."""
    rng = random.Random(f"golden user actions:{seed}")
    base = _full(seed, desks=1)
    policy = ("requested", "thumbnails", "all")[seed % 3]
    kinds = (sc.REQUEST, sc.REFUSE, sc.READOUT, sc.COLLECT, sc.BREAK)
    steps = []
    for _ in range(12):
        kind = rng.choice(kinds)
        a, b = rng.randrange(3), rng.randrange(40)
        if kind == sc.BREAK:
            a, b = rng.sample(range(3), 2)
        steps.append(sc.Step(round(rng.uniform(0, 20 * base.interval), 3), kind, a, b))
    return replace(base, desk_policy=policy, steps=_sorted((*base.steps, *steps)))


def split_marks(seed: int) -> sc.Scenario:
    """Two desks mark the same pictures while a partition keeps them apart (issue 19): desk 1
    with the camera, desk 2 alone; desk 2 marks later, so its marks win where both set one."""
    base = sc.Scenario(seed=seed, cameras=1, desks=2, pictures=4, skew=0.0, marks=True,
                       settle=300.0)
    steps = [sc.Step(100.0, sc.PARTITION, 0b100, 0, 300.0)]
    for picture in range(2):
        steps += [sc.Step(150.0 + picture, sc.MARK, 1, picture),
                  sc.Step(250.0 + picture, sc.MARK, 2, picture)]
    return replace(base, steps=_sorted(tuple(steps)))


# Shrunk scenarios each planted bug is caught in (tests/sim/test_planted_bugs.py finds
# such scenarios afresh; these are pinned so that the run itself cannot drift).
_PLANTED = {
    "free-before-stored": '{"bandwidth":50000,"camera_capacity":40000,"camera_policy":"thumbnails","cameras":2,"chunk_size":65536,"desk_capacity":100000000,"desk_policy":"all","desks":0,"high_water":0.9,"interval":20.0,"latency":0.005,"picture_max":20000,"picture_min":4000,"pictures":3,"seed":2,"settle":300.0,"skew":30.0,"steps":[],"thumbnail":3000}',
    "chunk-before-thumbnail": '{"bandwidth":50000,"camera_capacity":40000,"camera_policy":"thumbnails","cameras":2,"chunk_size":65536,"desk_capacity":100000000,"desk_policy":"all","desks":0,"high_water":0.5,"interval":2.0,"latency":0.005,"picture_max":20000,"picture_min":4000,"pictures":3,"seed":0,"settle":300.0,"skew":30.0,"steps":[[0.0,"crash",0,0,1.0]],"thumbnail":3000}',
    "accept-past-capacity": '{"bandwidth":50000,"camera_capacity":40000,"camera_policy":"thumbnails","cameras":2,"chunk_size":65536,"desk_capacity":100000000,"desk_policy":"all","desks":0,"high_water":0.5,"interval":20.0,"latency":0.005,"picture_max":20000,"picture_min":4000,"pictures":4,"seed":0,"settle":300.0,"skew":30.0,"steps":[],"thumbnail":300}',
    "stale-readout": '{"bandwidth":50000,"camera_capacity":10000000,"camera_policy":"thumbnails","cameras":1,"chunk_size":65536,"desk_capacity":100000000,"desk_policy":"all","desks":1,"high_water":0.9,"interval":20.0,"latency":0.005,"picture_max":20000,"picture_min":4000,"pictures":1,"seed":0,"settle":300.0,"skew":30.0,"steps":[[60.0,"readout",1,0,0.0]],"thumbnail":300}',
}


def runs() -> dict[str, Run]:
    """Every pinned run, by name (names are stable: the JSON is keyed by them)."""
    out: dict[str, Run] = {}
    for seed in range(2):
        out[f"quiet-{seed}"] = Run(sc.generate(seed, cameras=2, pictures=6, desks=1))
    for seed in range(6):
        out[f"field-day-{seed}"] = Run(sc.generate(seed, cameras=3, pictures=20, desks=1, faults=FAMILIES))
    for seed, family in enumerate(FAMILIES):
        out[f"{family}-{seed}"] = Run(sc.generate(seed, cameras=3, pictures=12, desks=1, faults=(family,)))
    for seed in range(3):
        out[f"user-actions-{seed}"] = Run(_user_actions(seed))
    for name, text in sorted(FOUND.items()):  # scenarios that once broke an invariant
        out[f"regression-{name}"] = Run(sc.Scenario.from_json(text), ci=False)
    for seed in range(3):
        out[f"lying-{seed}"] = Run(
            sc.generate(seed, cameras=3, pictures=20, desks=2, faults=(*FAMILIES, "lying"))
        )
    for bug, text in sorted(_PLANTED.items()):
        scenario = sc.Scenario.from_json(text)
        out[f"planted-{bug}"] = Run(scenario, frozenset({bug}))
        out[f"planted-{bug}-clean"] = Run(scenario)
    # The widened scenarios: what the simulator's suite skipped before issue 15.
    for seed in range(3):
        out[f"replicas2-{seed}"] = Run(_full(seed, desks=2, replicas=2))
        out[f"repair-{seed}"] = Run(_repair(seed))
        out[f"readout-wait-{seed}"] = Run(_waiting_readout(seed))
        out[f"wrapped-keys-{seed}"] = Run(_wrapped_keys(seed))
    # Marks that travel (issue 19): new runs, so that every run above keeps its trace.
    for seed in range(3):
        out[f"marks-{seed}"] = Run(
            sc.generate(seed, cameras=2, pictures=10, desks=2, faults=("marks", *FAMILIES))
        )
        out[f"split-marks-{seed}"] = Run(split_marks(seed))
    return out


def trace_of(run: Run) -> dict[str, str | None]:
    """What is pinned of a run: its trace hash and the invariant it broke (if any)."""
    world = World(run.scenario, planted_bugs=run.bugs).run()
    rule = None if world.violation is None else world.violation.rule
    return {"hash": world.trace_hash, "violation": rule}


def load() -> dict[str, dict[str, str | None]]:
    data: dict[str, dict[str, str | None]] = json.loads(GOLDEN.read_text())
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim.golden", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="compare every run with the pinned hash")
    mode.add_argument("--write", action="store_true", help="pin the hashes of this tree's runs")
    parser.add_argument("names", nargs="*", help="only these runs (default: all)")
    args = parser.parse_args(argv)
    every = runs()
    names = args.names or sorted(every)
    unknown = sorted(set(names) - set(every))
    if unknown:
        print(f"unknown runs {unknown}; known: {sorted(every)}", file=sys.stderr)
        return 2
    pinned = load() if GOLDEN.exists() else {}
    changed = []
    for name in names:
        got = trace_of(every[name])
        if pinned.get(name) != got:
            changed.append(name)
            print(f"{name}: pinned {pinned.get(name)}, now {got}")
        pinned[name] = got
    if args.write:
        kept = {name: pinned[name] for name in sorted(pinned) if name in every}
        GOLDEN.write_text(json.dumps(kept, indent=1, sort_keys=True) + "\n")
        print(f"wrote {len(kept)} traces to {GOLDEN}")
        return 0
    print(f"{len(names) - len(changed)} of {len(names)} runs give their pinned trace")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
