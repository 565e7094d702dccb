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
    # cut the honest camera off (unexpected-transfer).  Fixed in protocol/transfers.py
    # on_complete: a finished urgent stream is ignored if it comes again.
    "urgent-repeat-crossing-completion": '{"bandwidth":50000,"camera_capacity":10000000,"camera_policy":"thumbnails","cameras":2,"chunk_size":65536,"desk_capacity":100000000,"desk_policy":"all","desks":1,"high_water":0.9,"interval":2.0,"latency":0.005,"pictures":3,"seed":184,"settle":300.0,"skew":30.0,"steps":[[1.0,"request",2,0,0.0]],"thumbnail":3000,"picture_max":80000,"picture_min":4000}',
    # The liar's field day (issue 14): a relay collection resumed from a second holder after
    # the lying first one left mid-record was judged on the liar's unchecked bytes, and the
    # honest holder cut off.  Fixed in protocol/readout.py _ask_holder.
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
