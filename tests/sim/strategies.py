"""Hypothesis strategies for simulator scenarios: small meshes, few pictures, a handful of steps.

Every field shrinks toward the simplest mesh (one camera, no desk, no steps),
so a failure ends as a short scenario whose JSON ``cammesh sim --replay`` reruns.
"""

from __future__ import annotations

from hypothesis import strategies as st

from sim import scenario as sc

KIND_WEIGHTS = (sc.CRASH, sc.BREAK, sc.PARTITION, sc.VANISH, sc.READOUT, sc.COLLECT, sc.REFUSE, sc.REQUEST)


@st.composite
def steps(
    draw: st.DrawFn, devices: int, pictures: int, horizon: float, kinds: tuple[str, ...]
) -> sc.Step:
    kind = draw(st.sampled_from(kinds))
    at = float(draw(st.integers(0, int(horizon))))
    a = draw(st.integers(0, devices - 1))
    if kind == sc.PARTITION:
        a = draw(st.integers(1, max(1, (1 << devices) - 2)))
    b = draw(st.integers(0, max(0, pictures - 1))) if kind in (sc.READOUT, sc.REFUSE, sc.REQUEST) else 0
    if kind == sc.BREAK:
        b = draw(st.integers(0, devices - 1))
    duration = float(draw(st.integers(1, 120))) if kind in (sc.CRASH, sc.PARTITION, sc.VANISH) else 0.0
    return sc.Step(at, kind, a, b, duration)


@st.composite
def scenarios(
    draw: st.DrawFn,
    *,
    max_cameras: int = 3,
    max_desks: int = 1,
    max_pictures: int = 5,
    max_steps: int = 5,
    kinds: tuple[str, ...] = KIND_WEIGHTS,
    full_cards: bool = True,
    min_desks: int = 0,
    min_cameras: int = 1,
    min_steps: int = 0,
) -> sc.Scenario:
    """A small scenario; ``full_cards`` lets camera cards be small enough to force dispersal."""
    cameras = draw(st.integers(min_cameras, max_cameras))
    desks = draw(st.integers(min_desks, max_desks))
    if cameras + desks < 2:
        desks = max(desks, 0)
        cameras = max(cameras, 2 - desks)
    pictures = draw(st.integers(1, max_pictures))
    picture_max = draw(st.sampled_from([20_000, 6_000, 80_000]))
    capacity = 10_000_000
    if full_cards:
        capacity = draw(st.sampled_from([10_000_000, picture_max * 2, picture_max * 3]))
    interval = float(draw(st.sampled_from([20, 2, 60])))
    horizon = pictures * interval * 2 + 60
    n = cameras + desks
    step_list = draw(st.lists(steps(n, cameras * pictures, horizon, kinds), min_size=min_steps, max_size=max_steps))
    step_list.sort(key=lambda s: (s.at, s.kind, s.a, s.b))
    return sc.Scenario(
        seed=draw(st.integers(0, 1000)),
        cameras=cameras,
        desks=desks,
        pictures=pictures,
        interval=interval,
        picture_min=min(4_000, picture_max),
        picture_max=picture_max,
        camera_capacity=capacity,
        high_water=draw(st.sampled_from([0.9, 0.5])),
        thumbnail=draw(st.sampled_from([300, 3000])),
        desk_capacity=100_000_000,
        settle=300.0,
        steps=tuple(step_list),
    )
