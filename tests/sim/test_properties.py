"""Hypothesis explores scenarios; every invariant must hold in every one.

A failure prints the seed and the shrunk scenario's JSON: ``cammesh sim
--replay '<json>'`` (or ``python -m sim --replay``) reruns it identically.
CI profile: derandomised, 60 examples; CAMMESH_PROFILE=long for thousands.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from sim import scenario as sc
from sim.world import World
from tests.conftest import long_profile
from tests.sim.strategies import scenarios


def explain(world: World) -> str:
    scenario = world.as_scenario()
    return (
        f"{world.violation}\nseed {scenario.seed}; replay with:\n"
        f"  cammesh sim --replay '{scenario.to_json()}'"
    )


def check(scenario: sc.Scenario) -> World:
    world = World(scenario).run()
    if world.violation is not None:
        pytest.fail(explain(world))
    return world


@given(scenarios())
def test_invariants_hold_under_faults(scenario: sc.Scenario) -> None:
    check(scenario)


@given(scenarios(full_cards=True, kinds=(sc.CRASH, sc.BREAK, sc.COLLECT, sc.READOUT), min_cameras=2))
@settings(max_examples=2000 if long_profile() else 30)
def test_invariants_hold_with_full_cards_and_dispersal(scenario: sc.Scenario) -> None:
    check(scenario)


@given(st.integers(0, 2**32 - 1))
@settings(max_examples=500 if long_profile() else 5)
def test_generated_field_days_keep_every_invariant(seed: int) -> None:
    scenario = sc.generate(
        seed, cameras=3, pictures=8, desks=1,
        faults=("crash", "partition", "breaks", "full", "vanish", "readout"),
    )
    check(scenario)


class MeshMachine(RuleBasedStateMachine):
    """Faults and user actions chosen one at a time while the world runs between them."""

    world: World

    @initialize(
        cameras=st.integers(1, 3),
        desks=st.integers(0, 1),
        small_cards=st.booleans(),
        seed=st.integers(0, 1000),
    )
    def start(self, cameras: int, desks: int, small_cards: bool, seed: int) -> None:
        if cameras + desks < 2:
            cameras = 2
        scenario = sc.Scenario(
            seed=seed, cameras=cameras, desks=desks, pictures=4, interval=15.0,
            camera_capacity=40_000 if small_cards else 10_000_000, picture_max=20_000, settle=300.0,
        )
        self.world = World(scenario)

    def _device(self, data: st.DataObject) -> int:
        return data.draw(st.integers(0, len(self.world.devices) - 1))

    @rule(dt=st.integers(1, 90))
    def advance(self, dt: int) -> None:
        self.world.run(until=self.world.t + dt)

    @rule(data=st.data(), down=st.integers(1, 60))
    def crash(self, data: st.DataObject, down: int) -> None:
        self.world.inject(sc.Step(self.world.t, sc.CRASH, self._device(data), 0, float(down)))

    @rule(data=st.data())
    def break_link(self, data: st.DataObject) -> None:
        self.world.inject(sc.Step(self.world.t, sc.BREAK, self._device(data), self._device(data)))

    @rule(data=st.data(), heal=st.integers(1, 120))
    def partition(self, data: st.DataObject, heal: int) -> None:
        mask = data.draw(st.integers(1, (1 << len(self.world.devices)) - 2))
        self.world.inject(sc.Step(self.world.t, sc.PARTITION, mask, 0, float(heal)))

    @precondition(lambda self: bool(self.world.pictures))
    @rule(data=st.data(), kind=st.sampled_from([sc.READOUT, sc.REQUEST, sc.REFUSE, sc.COLLECT]))
    def user(self, data: st.DataObject, kind: str) -> None:
        number = data.draw(st.integers(0, len(self.world.pictures) - 1))
        self.world.inject(sc.Step(self.world.t, kind, self._device(data), number))

    @invariant()
    def holds(self) -> None:
        if self.world.violation is not None:
            pytest.fail(explain(self.world))

    def teardown(self) -> None:
        # Run the rest of the scenario (its captures and settle) and the quiet checks.
        if getattr(self, "world", None) is not None and self.world.violation is None:
            self.world.run()
            if self.world.violation is not None:
                pytest.fail(explain(self.world))


MeshMachine.TestCase.settings = settings(
    max_examples=1000 if long_profile() else 15, stateful_step_count=12
)
test_mesh_machine = MeshMachine.TestCase


def test_rare_paths_run() -> None:
    """The field days the suite runs do reach the rare paths: the counters prove it."""
    total: dict[str, int] = {}
    for seed in range(4):
        scenario = sc.generate(
            seed, cameras=3, pictures=30, desks=seed % 2,
            faults=("crash", "partition", "breaks", "full", "vanish", "readout"),
        )
        world = check(scenario)
        for name, n in world.metrics.counters.items():
            total[name] = total.get(name, 0) + n
    for name in ("wire.reject", "event.Dispersed", "event.Collected", "resumes",
                 "crash.mid_dispersal", "readouts.verified", "frames.lost_in_break", "restarts"):
        assert total.get(name, 0) > 0, f"no run reached {name}: {sorted(total)}"
