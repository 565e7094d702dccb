"""The pinned simulator runs reproduce their trace hashes byte for byte (tests/sim/golden.py).

CI runs the runs marked ``ci`` (a few seconds); ``python -m tests.sim.golden --check``
runs them all.  Each widened run is also checked to exercise what it is there for, so a
scenario that drifts into doing nothing cannot keep a hash pinned for nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from protocol.messages import Role
from sim.world import World
from tests.sim import golden

RUNS = golden.runs()
PINNED = golden.load()
CI = sorted(name for name, run in RUNS.items() if run.ci)


def _wrapped_at_desk(world: World) -> bool:
    desks = [d for d in world.devices if d.role is Role.DESK]
    return any(r.wrapped_key is not None for d in desks for r in d.store.images())


# What each family of widened runs must show it ran (by name prefix).
EXERCISES: dict[str, Callable[[World], bool]] = {
    "replicas2-": lambda w: w.metrics.counters.get("event.Dispersed", 0) > 0,
    "repair-": lambda w: w.metrics.counters.get("lost", 0) == 1,
    "readout-wait-": lambda w: w.metrics.counters.get("readouts.verified", 0) > 0,
    "wrapped-keys-": _wrapped_at_desk,
    "marks-": lambda w: w.metrics.counters.get("end.marks_agree", 0) == 1,
    "split-marks-": lambda w: w.metrics.counters.get("end.marks_agree", 0) == 1
    and w.metrics.counters.get("event.MarksArrived", 0) > 0,
}


def test_every_run_is_pinned() -> None:
    assert sorted(PINNED) == sorted(RUNS)


def test_planted_bugs_are_caught_in_their_pinned_runs() -> None:
    for name, run in RUNS.items():
        if run.bugs:
            assert PINNED[name]["violation"] is not None, name
            assert PINNED[f"{name}-clean"]["violation"] is None, name


def test_each_widened_family_is_pinned_for_three_seeds() -> None:
    for prefix in EXERCISES:
        assert sum(name.startswith(prefix) for name in RUNS) >= 3, prefix


@pytest.mark.parametrize("name", CI)
def test_a_pinned_run_gives_its_pinned_trace(name: str) -> None:
    run = RUNS[name]
    world = World(run.scenario, planted_bugs=run.bugs).run()
    rule = None if world.violation is None else world.violation.rule
    assert {"hash": world.trace_hash, "violation": rule} == PINNED[name], (
        f"{name} no longer gives its pinned trace: a behaviour change. If it is meant, say "
        "why in the commit and rerun `python -m tests.sim.golden --write`"
    )
    for prefix, ran in EXERCISES.items():
        if name.startswith(prefix):
            assert ran(world), f"{name} no longer exercises what it is pinned for"
