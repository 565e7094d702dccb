"""A lying peer in the simulator (issue 14): honest devices keep every invariant, and each
defence taken out is caught and shrunk.

The liar (sim/lying.py) runs the real node and lies on the wire.  With every
defence of protocol/ in place, the invariants hold for every honest device and
the liar is cut off with a typed error.  With one defence taken out
(tests/protocol/check_sites.py ``remove_check``: a monkeypatch, the code never
edited), Hypothesis finds a lying scenario that breaks an invariant, shrinks it
to a short one that replays identically from its JSON, and the very same
scenario keeps every invariant once the defence is back: the catch is the
defence's doing, as tests/sim/test_planted_bugs.py proves for planted bugs.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st

from sim import scenario as sc
from sim.world import World
from tests.conftest import long_profile
from tests.protocol.check_sites import remove_check
from tests.sim.strategies import scenarios
from tests.sim.test_properties import check

DISPERSAL = (sc.CRASH, sc.BREAK, sc.COLLECT)


@st.composite
def lying_scenarios(
    draw: st.DrawFn,
    *,
    lies: tuple[str, ...] = sc.LIES,
    kinds: tuple[str, ...] = (sc.CRASH, sc.BREAK, sc.READOUT, sc.COLLECT, sc.REQUEST),
    max_pictures: int = 5,
    min_steps: int = 0,
    replicas: tuple[int, ...] = (1,),
) -> sc.Scenario:
    """A small scenario in which one device, any of them, tells some of ``lies``.

    With ``replicas`` 2 (where the mesh has three devices or more) owners keep two holders,
    and an honest owner's picture must keep a copy on an honest card.
    """
    base = draw(scenarios(max_pictures=max_pictures, kinds=kinds, min_steps=min_steps))
    liar = draw(st.integers(0, base.devices() - 1))
    told = draw(st.lists(st.sampled_from(lies), min_size=1, max_size=len(lies), unique=True))
    copies = draw(st.sampled_from(replicas)) if base.devices() >= 3 else 1
    return replace(base, liar=liar, lies=tuple(sorted(told)), replicas=copies)


@given(lying_scenarios(replicas=(1, 2)))
@settings(max_examples=2000 if long_profile() else 40)
def test_honest_devices_keep_every_invariant_beside_a_liar(scenario: sc.Scenario) -> None:
    check(scenario)


@given(
    lying_scenarios(
        kinds=DISPERSAL, lies=("stored-early", "stored-wrong-digest", "accept"), replicas=(1, 2)
    )
)
@settings(max_examples=2000 if long_profile() else 25)
def test_a_lying_holder_frees_nothing_it_does_not_hold(scenario: sc.Scenario) -> None:
    check(scenario)


def test_a_liar_is_cut_off_for_every_lie_it_tells() -> None:
    """Field days with a liar: every kind of lie is told, and the honest devices cut the
    liar off for each one they can see through, with the code that names it."""
    told: set[str] = set()
    codes: set[str] = set()
    for seed in range(6):
        # Two desks from seed 3 on: two replicas, the liar's copies vouch for nothing honest.
        scenario = sc.generate(
            seed, cameras=3, pictures=20, desks=1 + seed // 3,
            faults=("full", "readout", "breaks", "lying"),
        )
        assert scenario.replicas == (2 if seed >= 3 else 1)
        world = check(scenario)
        for name in world.metrics.counters:
            if name.startswith("liar.told."):
                told.add(name.removeprefix("liar.told."))
            elif name.startswith("liar.cut_off."):
                codes.add(name.removeprefix("liar.cut_off."))
    assert told == set(sc.LIES), sorted(set(sc.LIES) - told)
    wanted = {
        "premature-stored", "bad-digest", "bad-accept", "hash-mismatch", "bad-size",
        "bad-complete", "bad-offset", "unexpected-message", "unexpected-chunk",
        "unexpected-complete",
    }
    assert wanted <= codes, sorted(wanted - codes)


def test_a_liars_changed_bytes_never_get_an_honest_holder_cut_off() -> None:
    """Found by the liar: a collection resumed from a second holder after the first sent a
    changed record was judged on the liar's bytes, and the honest holder was cut off
    (fixed in protocol/collections.py ``_open`` and protocol/inbound.py ``on_complete``)."""
    scenario = sc.generate(
        5, cameras=3, pictures=20, desks=2, faults=("full", "readout", "breaks", "lying")
    )
    world = check(scenario)
    assert world.metrics.counters.get("liar.cut_off.hash-mismatch", 0) > 0


def test_a_lying_run_replays_byte_for_byte_and_no_lies_leave_the_json_as_it_was() -> None:
    scenario = sc.generate(3, cameras=2, pictures=6, desks=1, faults=("full", "lying"))
    replay = sc.Scenario.from_json(scenario.to_json())
    assert replay == scenario and replay.lies == sc.LIES
    assert World(replay).run().trace_hash == World(scenario).run().trace_hash
    honest = sc.generate(3, cameras=2, pictures=6, desks=1, faults=("full",))
    assert '"lies"' not in honest.to_json() and '"liar"' not in honest.to_json()
    # The liar's draws are its own: the honest scenario is the lying one without its liar.
    assert replace(scenario, lies=(), liar=0) == honest


# check taken out -> (lying scenarios to search, the invariant that must catch it, judged cut-offs)
CASES: dict[str, tuple[st.SearchStrategy[sc.Scenario], str, bool]] = {
    # Believed, an early STORED frees an original still on its way: it then exists nowhere.
    "premature-stored@Dispersal.on_stored": (
        lying_scenarios(kinds=DISPERSAL, lies=("stored-early",), max_pictures=4),
        "picture-lost",
        False,
    ),
    # Believed, a STORED naming another digest frees an original nobody verified.
    "bad-digest@Dispersal.on_stored": (
        lying_scenarios(kinds=DISPERSAL, lies=("stored-wrong-digest",), max_pictures=4),
        "liar-not-cut-off",
        True,
    ),
    # Believed, an accept reserving too little streams into room nobody promised.
    "bad-accept@Dispersal.on_accept": (
        lying_scenarios(kinds=DISPERSAL, lies=("accept",), max_pictures=4),
        "liar-not-cut-off",
        True,
    ),
    # Believed, a read-out answered with changed bytes hands the user a wrong picture.
    "hash-mismatch@Inbound.on_complete": (
        lying_scenarios(kinds=(sc.READOUT,), lies=("corrupt-chunk",), max_pictures=3, min_steps=1),
        "readout",
        True,
    ),
}


def caught(rule: str, judged: bool, scenario: sc.Scenario) -> bool:
    world = World(scenario, judge_cut_offs=judged).run()
    return world.violation is not None and world.violation.rule == rule


@pytest.mark.parametrize("key", sorted(CASES))
def test_each_defence_taken_out_is_caught_and_shrunk(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    strategy, rule, judged = CASES[key]
    with monkeypatch.context() as patched:
        remove_check(patched, key)
        shrunk = find(
            strategy,
            lambda s: caught(rule, judged, s),
            settings=settings(max_examples=2000 if long_profile() else 300, database=None),
        )
        replay = sc.Scenario.from_json(shrunk.to_json())
        first = World(replay, judge_cut_offs=judged).run()
        again = World(replay, judge_cut_offs=judged).run()
    assert first.violation is not None and first.violation.rule == rule
    assert first.trace_hash == again.trace_hash
    assert replay.devices() <= 3, replay.to_json()
    assert replay.pictures <= 4, replay.to_json()
    assert len(replay.steps) <= 2, replay.to_json()
    # With the defence back, the very same scenario keeps every invariant.
    clean = World(replay, judge_cut_offs=judged).run()
    assert clean.violation is None, f"{clean.violation}\n{replay.to_json()}"
    print(f"{key} out: caught by {rule}: {first.violation}\n  cammesh sim --replay '{replay.to_json()}'")
