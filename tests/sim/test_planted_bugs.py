"""Planted bugs prove the suite: each broken behaviour is caught by an invariant and shrunk.

For every bug protocol.config.PLANTED_BUGS names, Hypothesis searches small
scenarios for one where the invariants break with the bug planted
(``hypothesis.find``), shrinks it, and the test checks that the shrunk
scenario is short, names the expected invariant, replays identically from its
JSON, and keeps every invariant once the bug is removed, so the catch is the
bug's doing and not the mesh's.
"""

from __future__ import annotations

import pytest
from hypothesis import find, settings
from hypothesis import strategies as st

from protocol.config import PLANTED_BUGS
from sim import scenario as sc
from sim.world import World
from tests.conftest import long_profile
from tests.sim.strategies import scenarios

DISPERSAL_FAULTS = (sc.CRASH, sc.BREAK, sc.VANISH, sc.PARTITION)

# bug -> (scenarios to search, the invariant that must catch it)
CASES: dict[str, tuple[st.SearchStrategy[sc.Scenario], str]] = {
    # Freeing before the holder's STORED leaves the picture only in flight.
    "free-before-stored": (scenarios(max_cameras=2, max_pictures=5, kinds=DISPERSAL_FAULTS), "picture-lost"),
    # Originals overtaking thumbnails show on a link when a backlog of thumbnails meets dispersal.
    "chunk-before-thumbnail": (
        scenarios(max_cameras=2, max_pictures=6, kinds=DISPERSAL_FAULTS),
        "thumbnail-before-original",
    ),
    # A holder that accepts without reserving room breaks the capacity invariant on promises.
    "accept-past-capacity": (scenarios(max_cameras=2, max_pictures=5, kinds=DISPERSAL_FAULTS), "capacity"),
    # A read-out handing out a truncated original is caught by comparing bytes.
    "stale-readout": (
        scenarios(max_cameras=2, max_pictures=4, kinds=(sc.READOUT,), min_steps=1, max_steps=3),
        "readout",
    ),
}


def caught(bug: str, rule: str, scenario: sc.Scenario) -> bool:
    world = World(scenario, planted_bugs=frozenset({bug})).run()
    return world.violation is not None and world.violation.rule == rule


def test_every_planted_bug_has_a_case() -> None:
    assert set(CASES) == set(PLANTED_BUGS)


@pytest.mark.parametrize("bug", sorted(PLANTED_BUGS))
def test_planted_bug_is_caught_and_shrunk(bug: str) -> None:
    strategy, rule = CASES[bug]
    shrunk = find(
        strategy,
        lambda s: caught(bug, rule, s),
        settings=settings(max_examples=2000 if long_profile() else 300, database=None),
    )
    replay = sc.Scenario.from_json(shrunk.to_json())
    first = World(replay, planted_bugs=frozenset({bug})).run()
    again = World(replay, planted_bugs=frozenset({bug})).run()
    assert first.violation is not None and first.violation.rule == rule
    assert first.trace_hash == again.trace_hash
    # Shrunk to a short scenario a person can read.
    assert replay.devices() <= 3, replay.to_json()
    assert replay.pictures <= 4, replay.to_json()
    assert len(replay.steps) <= 2, replay.to_json()
    # Without the bug, the very same scenario keeps every invariant.
    clean = World(replay).run()
    assert clean.violation is None, f"{clean.violation}\n{replay.to_json()}"
    print(f"{bug}: caught by {rule}: cammesh sim --replay '{replay.to_json()}'")
