"""Scenarios that once broke an invariant, kept so the bug they found stays fixed.

Each is the shrunk scenario Hypothesis printed; the test replays it and wants every
invariant to hold.
"""

from __future__ import annotations

import pytest

from sim import scenario as sc
from tests.sim.test_properties import check

FOUND = {
    # The long property run (issue 14): a user's request for an original whose background
    # pull was just ending crossed its completion; the camera served it again and the desk
    # cut the honest camera off (unexpected-transfer).  Fixed in protocol/inbound.py
    # on_complete: a finished urgent stream is ignored if it comes again.
    "urgent-repeat-crossing-completion": '{"bandwidth":50000,"camera_capacity":10000000,"camera_policy":"thumbnails","cameras":2,"chunk_size":65536,"desk_capacity":100000000,"desk_policy":"all","desks":1,"high_water":0.9,"interval":2.0,"latency":0.005,"pictures":3,"seed":184,"settle":300.0,"skew":30.0,"steps":[[1.0,"request",2,0,0.0]],"thumbnail":3000,"picture_max":80000,"picture_min":4000}',
    # The liar's field day (issue 14): a relay collection resumed from a second holder after
    # the lying first one left mid-record was judged on the liar's unchecked bytes, and the
    # honest holder cut off.  Fixed in protocol/collections.py _ask_holder.
    "relay-resumed-on-unchecked-bytes": sc.generate(
        98, cameras=3, pictures=20, desks=2,
        faults=("crash", "partition", "breaks", "full", "vanish", "readout", "lying"),
    ).to_json(),
    # The long lying run: the liar's own list, bent by its lies, is not an honest device's fault.
    "liar-owned-holdings-not-judged": '{"bandwidth":50000,"camera_capacity":40000,"camera_policy":"thumbnails","cameras":2,"chunk_size":65536,"desk_capacity":100000000,"desk_policy":"all","desks":1,"high_water":0.9,"interval":20.0,"latency":0.005,"liar":1,"lies":["accept","corrupt-chunk","other-picture","out-of-order","replay","stored-early","stored-never-sent","stored-wrong-digest"],"picture_max":20000,"picture_min":4000,"pictures":5,"replicas":2,"seed":80,"settle":300.0,"skew":30.0,"steps":[],"thumbnail":300}',
}


@pytest.mark.parametrize("name", sorted(FOUND))
def test_a_scenario_that_once_failed_keeps_every_invariant(name: str) -> None:
    check(sc.Scenario.from_json(FOUND[name]))


# Issue 15's pinned repair runs: once a holder was lost for good, an owner whose card was
# below its mark asked the one peer left with room again at once after every reject (its
# rejections were forgotten below the mark): ~10 000 DisperseRequest/DisperseReject pairs
# in this run.  Fixed in protocol/dispersal.py _forget_rejections: a repair's stand.
REPAIR_STORM = '{"bandwidth":50000,"camera_capacity":2000000,"camera_policy":"thumbnails","cameras":2,"chunk_size":65536,"desk_capacity":100000000,"desk_policy":"all","desks":2,"high_water":0.7,"interval":20.0,"latency":0.005,"picture_max":250000,"picture_min":20000,"pictures":20,"replicas":2,"seed":2,"settle":900.0,"skew":30.0,"steps":[[320.0,"lose",2,0,0.0],[460.0,"collect",0,0,0.0],[461.0,"collect",1,0,0.0]],"thumbnail":300}'


def test_a_repair_rejected_by_a_holder_waits_before_asking_it_again() -> None:
    world = check(sc.Scenario.from_json(REPAIR_STORM))
    counters = world.metrics.counters
    assert counters.get("lost") == 1 and counters.get("event.Repaired", 0) >= 1
    # One ask per rejected holder and picture per retry_s (30 s) over the ~1 400 s after the
    # loss is a few hundred; asking again at once after each reject was ten thousand.
    assert counters.get("wire.disperse", 0) < 1000, counters.get("wire.disperse")
