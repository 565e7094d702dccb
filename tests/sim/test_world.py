"""The world itself: determinism across runs and processes, links, partitions, crash and restart."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sim import report as rp
from sim import scenario as sc
from sim.world import World

ROOT = Path(__file__).resolve().parents[2]

FAULTY = sc.generate(
    7, cameras=3, pictures=6, desks=1, faults=("crash", "partition", "breaks", "full", "readout")
)


def run(scenario: sc.Scenario, **kwargs: object) -> World:
    return World(scenario, keep_trace=True, **kwargs).run()  # type: ignore[arg-type]


def test_same_seed_same_trace_hash_in_this_process() -> None:
    first, second = run(FAULTY), run(FAULTY)
    assert first.violation is None, str(first.violation)
    assert first.trace_hash == second.trace_hash
    assert first.trace_lines == second.trace_lines
    assert first.metrics.frames > 50


def test_another_seed_gives_another_trace() -> None:
    other = sc.Scenario.from_json(FAULTY.to_json().replace('"seed":7', '"seed":8'))
    assert run(other).trace_hash != run(FAULTY).trace_hash


@pytest.mark.parametrize("hashseed", ["1", "4242"])
def test_same_trace_hash_in_a_process_with_another_hash_seed(hashseed: str) -> None:
    env = dict(os.environ, PYTHONHASHSEED=hashseed)
    out = subprocess.run(
        [sys.executable, "-m", "sim", "--replay", FAULTY.to_json(), "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr + out.stdout
    import json

    assert json.loads(out.stdout)["trace_hash"] == run(FAULTY).trace_hash


def test_scenario_json_round_trips() -> None:
    assert sc.Scenario.from_json(FAULTY.to_json()) == FAULTY
    with pytest.raises(sc.ScenarioError, match="unknown scenario fields"):
        sc.Scenario.from_json('{"sedd": 1}')
    with pytest.raises(sc.ScenarioError, match="step kind"):
        sc.Scenario.from_json('{"steps": [[1.0, "meteor", 0, 0, 0.0]]}')


def test_thumbnails_reach_every_peer_and_desk_gets_originals() -> None:
    world = run(sc.Scenario(seed=3, cameras=2, desks=1, pictures=3))
    assert world.violation is None, str(world.violation)
    assert len(world.pictures) == 6
    # Each picture's thumbnail at the two other devices; the desk pulls every original.
    assert len(world.metrics.thumbnail_arrivals) == 12
    desk_originals = {p for _, dev, p in world.metrics.original_arrivals if dev == 2}
    assert desk_originals == set(range(6))


def test_bandwidth_and_latency_set_the_arrival_time() -> None:
    fast = run(sc.Scenario(seed=3, cameras=1, desks=1, pictures=1, bandwidth=1_000_000, latency=0.001))
    slow = run(sc.Scenario(seed=3, cameras=1, desks=1, pictures=1, bandwidth=10_000, latency=2.0))
    t_fast = fast.metrics.original_arrivals[0][0] - fast.pictures[0].captured_at
    t_slow = slow.metrics.original_arrivals[0][0] - slow.pictures[0].captured_at
    size = slow.pictures[0].size
    assert t_slow >= size / 10_000 + 2.0
    assert t_fast < size / 10_000


def test_no_frame_crosses_a_partition() -> None:
    # Devices 0 and 1 on one side, the desk (2) alone, from t=5 to t=400.
    scenario = sc.Scenario(
        seed=5, cameras=2, desks=1, pictures=4, interval=30.0,
        steps=(sc.Step(5.0, sc.PARTITION, 0b011, 0, 395.0),),
    )
    world = run(scenario)
    assert world.violation is None, str(world.violation)
    assert world.trace_lines is not None
    crossing = []
    for line in world.trace_lines:
        parts = line.split()
        if (
            len(parts) >= 4
            and parts[1] == "D"
            and 5.0 < float(parts[0]) < 400.0
            and (parts[2] == "2") != (parts[3] == "2")
        ):
            crossing.append(line)
    assert crossing == []
    # After the heal, the desk catches up on every thumbnail.
    desk_thumbs = {p for _, dev, p in world.metrics.thumbnail_arrivals if dev == 2}
    assert desk_thumbs == set(range(len(world.pictures)))


def test_crash_and_restart_keep_the_card_and_lose_nothing() -> None:
    scenario = sc.Scenario(
        seed=11, cameras=2, desks=1, pictures=4, interval=10.0, camera_capacity=60_000,
        steps=(sc.Step(15.0, sc.CRASH, 2, 0, 30.0), sc.Step(50.0, sc.CRASH, 0, 0, 20.0)),
    )
    world = run(scenario)
    assert world.violation is None, str(world.violation)
    assert world.metrics.counters.get("restarts") == 2
    assert all(d.node is not None for d in world.devices)
    assert all(d.incarnation == 2 for i, d in enumerate(world.devices) if i in (0, 2))
    # The crashed desk still ends with every original (its card survived the crash).
    for pic in world.pictures:
        assert world.devices[2].store.image(pic.image_id) is not None


def test_report_and_plot() -> None:
    world = run(FAULTY)
    report = rp.build(world)
    assert report.ok
    assert report.trace_hash == world.trace_hash
    assert report.thumbnail_p50 is not None and report.thumbnail_p99 is not None
    assert report.thumbnail_p50 <= report.thumbnail_p99
    assert "trace hash" in report.text()
    svg = rp.timeline_svg(world)
    assert svg.startswith("<svg") and svg.count("<line") > len(world.pictures)


def test_cli_replay_reruns_a_saved_scenario(tmp_path: Path) -> None:
    from sim.cli import main

    path = tmp_path / "s.json"
    path.write_text(FAULTY.to_json())
    plot = tmp_path / "t.svg"
    assert main(["--replay", str(path), "--plot", str(plot)]) == 0
    assert plot.read_text().startswith("<svg")
    assert main(["--replay", "not-a-file"]) == 2


def test_a_crash_mid_transfer_can_tear_the_last_write_and_loses_nothing() -> None:
    torn = 0
    for seed in range(4):
        # A 20 s pull to the desk, which crashes 11 s in: its last partial write may tear.
        scenario = sc.Scenario(
            seed=seed, cameras=1, desks=1, pictures=1, interval=1.0, picture_min=200_000,
            picture_max=250_000, bandwidth=10_000, steps=(sc.Step(12.0, sc.CRASH, 1, 0, 5.0),),
        )
        world = run(scenario)
        assert world.violation is None, str(world.violation)
        torn += world.metrics.counters.get("crash.torn_write", 0)
    assert torn > 0


def test_a_partition_is_public_state_and_its_heal_a_follow_up() -> None:
    """sim/faults.py acts on the world's public API and hands the heal back for scheduling."""
    from sim import faults

    scenario = sc.Scenario(seed=5, cameras=2, desks=1, pictures=1, interval=30.0)
    world = World(scenario)
    world.run(until=2.0)
    assert world.partition is None
    then = faults.partition(world, 0b1011, 10.0)  # bits past the device count are dropped
    assert world.partition == 0b011
    assert then == faults.FollowUp(world.t + 10.0, "heal", 0b011)
    assert not world.can_connect(0, 2) and world.can_connect(0, 1)
    faults.heal(world, 0b001)  # not this partition's heal: it stays
    assert world.partition == 0b011
    faults.heal(world, 0b011)
    assert world.partition is None and world.can_connect(0, 2)
