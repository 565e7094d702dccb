"""Liveness, in a mode of its own: once the network heals, every thumbnail reaches every peer in time.

After the last fault ends and the last picture is taken, every live device
must hold the thumbnail of every captured picture within ``BOUND`` virtual
seconds (reconnect back-off plus a few keepalive periods, far above the
seconds a thumbnail needs on these links).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from sim import invariants
from sim import scenario as sc
from sim.world import RECONNECT_MAX, World
from tests.conftest import long_profile
from tests.sim.strategies import scenarios

BOUND = 120.0


def healed_at(world: World) -> float:
    last = world.last_capture_at
    for step in world.steps:
        last = max(last, step.at + step.duration)
    return last + RECONNECT_MAX


def assert_live(scenario: sc.Scenario) -> World:
    world = World(scenario)
    # Captures delayed by a crashed camera happen after its restart, which is before healed_at.
    deadline = healed_at(world) + BOUND
    world.run(until=deadline)
    explain = f"replay with: cammesh sim --replay '{world.as_scenario().to_json()}'"
    assert world.violation is None, f"{world.violation}\n{explain}"
    missing = invariants.missing_thumbnails(world)
    assert not missing, (
        f"{len(missing)} thumbnails missing {BOUND}s after the network healed "
        f"(device, picture): {missing[:10]}\n{explain}"
    )
    return world


@given(scenarios(kinds=(sc.CRASH, sc.BREAK, sc.PARTITION, sc.VANISH), full_cards=True))
@settings(max_examples=1000 if long_profile() else 25)
def test_every_thumbnail_reaches_every_peer_after_healing(scenario: sc.Scenario) -> None:
    assert_live(scenario)


def test_liveness_check_can_fail() -> None:
    # Stopped while the partition still holds, the desk cannot have the other side's thumbnails.
    scenario = sc.Scenario(
        seed=2, cameras=2, desks=1, pictures=3, interval=5.0,
        steps=(sc.Step(0.0, sc.PARTITION, 0b011, 0, 10_000.0),),
    )
    world = World(scenario).run(until=200.0)
    assert world.violation is None
    assert invariants.missing_thumbnails(world)


@given(scenarios(kinds=(sc.CRASH, sc.BREAK, sc.PARTITION, sc.VANISH), full_cards=False, min_desks=1))
@settings(max_examples=1000 if long_profile() else 20)
def test_the_desk_gets_every_original_after_healing(scenario: sc.Scenario) -> None:
    world = World(scenario)
    world.run(until=healed_at(world) + BOUND + original_time(scenario))
    explain = f"replay with: cammesh sim --replay '{world.as_scenario().to_json()}'"
    assert world.violation is None, f"{world.violation}\n{explain}"
    missing = invariants.missing_originals(world)
    assert not missing, f"originals missing at the desk (desk, picture): {missing[:10]}\n{explain}"


def original_time(scenario: sc.Scenario) -> float:
    """Virtual seconds to move every original once over one link."""
    return scenario.cameras * scenario.pictures * scenario.picture_max / scenario.bandwidth


def test_a_desk_that_crashes_mid_pull_resumes_it() -> None:
    # The desk crashes 10 s into a 20 s pull; after its restart the pull must finish.
    scenario = sc.Scenario(
        seed=1, cameras=1, desks=1, pictures=1, interval=1.0, picture_min=200_000,
        picture_max=250_000, bandwidth=10_000, steps=(sc.Step(12.0, sc.CRASH, 1, 0, 5.0),),
    )
    world = World(scenario).run()
    assert world.violation is None, str(world.violation)
    assert invariants.missing_originals(world) == []


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_generated_field_day_heals(seed: int) -> None:
    assert_live(sc.generate(seed, cameras=3, pictures=6, desks=1, faults=("crash", "partition", "breaks", "vanish")))
