"""Marks that travel, in the simulator (issue 19): MARK steps and the marks-agree invariant.

Two desks marking the same pictures while a partition keeps them apart agree once it heals,
by last writer wins; a node that does not answer the digest at link ready leaves them apart,
and the invariant says so.
"""

from __future__ import annotations

import pytest

from protocol.effects import Effect
from protocol.marks import SharedMarks
from sim import scenario as sc
from sim.faults import marks_for
from sim.world import World
from storage.marks import Marks as MarkValues
from tests.sim.golden import split_marks


def test_two_desks_marking_while_apart_agree_after_the_heal_by_last_writer_wins() -> None:
    scenario = split_marks(0)
    world = World(scenario)
    world.run(until=390.0)  # the partition heals at 400
    desk1, desk2 = world.devices[1], world.devices[2]
    first = world.pictures[0].image_id
    assert desk1.store.stamped_marks(first) != desk2.store.stamped_marks(first)
    world.run()
    assert world.violation is None, world.violation
    assert world.metrics.counters["end.marks_agree"] == 1
    for picture in range(2):
        image_id = world.pictures[picture].image_id
        early, late = (next(s for s in scenario.steps if s.kind == sc.MARK and (s.a, s.b) == (d, picture))
                       for d in (1, 2))
        # What each editor changed (a field set to what it already showed is no change).
        wrote_early, wrote_late = ({n: v for n, v in marks_for(scenario.seed, step).items()
                                    if v != getattr(MarkValues(), n)} for step in (early, late))
        want = {n: (v, desk1.device_id) for n, v in wrote_early.items()}
        want.update({n: (v, desk2.device_id) for n, v in wrote_late.items()})
        assert wrote_late
        for dev in world.devices:
            held = dev.store.stamped_marks(image_id)
            assert {n: (m.value, m.device) for n, m in held.items()} == want, dev.name


def test_without_the_digest_at_link_ready_the_desks_stay_apart_and_the_invariant_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_answer(self: SharedMarks, link: object, msg: object) -> list[Effect]:
        return []

    monkeypatch.setattr(SharedMarks, "on_digest", no_answer)
    world = World(split_marks(0)).run()
    assert world.violation is not None and world.violation.rule == "marks-agree"


@pytest.mark.parametrize("seed", range(4))
def test_marks_agree_through_crashes_partitions_breaks_and_vanishing(seed: int) -> None:
    scenario = sc.generate(seed + 10, cameras=2, pictures=8, desks=2,
                           faults=("marks", "crash", "partition", "breaks", "vanish"))
    world = World(scenario).run()
    assert world.violation is None, world.violation
    assert world.metrics.counters.get("end.marks_agree") == 1, world.metrics.counters


def test_a_marks_scenario_replays_from_its_json_and_older_ones_leave_marks_out() -> None:
    scenario = split_marks(1)
    assert sc.Scenario.from_json(scenario.to_json()) == scenario
    assert '"marks":true' in scenario.to_json()
    assert "marks" not in sc.generate(1, cameras=2, pictures=3).to_json()
