"""What a run tells its reader: invariants, latencies, counts, the trace hash, and a timeline plot."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sim.world import World


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(fraction * len(ordered) + 0.999999) - 1))
    return ordered[rank]


@dataclass(frozen=True, slots=True)
class Report:
    """One run's figures; ``violation`` is None when every invariant held."""

    scenario: str  # the scenario JSON, for --replay
    violation: str | None
    violation_rule: str | None
    thumbnail_p50: float | None
    thumbnail_p99: float | None
    pictures: int
    originals_completed: int
    dispersals: int
    collections: int
    rejects: int
    resumes: int
    readouts_verified: int
    bytes_moved: int
    frames: int
    events: int
    virtual_seconds: float
    trace_hash: str
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.violation is None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["invariants_held"] = self.ok
        return data

    def text(self) -> str:
        """A short human-readable summary."""
        p50 = "-" if self.thumbnail_p50 is None else f"{self.thumbnail_p50:.3f}s"
        p99 = "-" if self.thumbnail_p99 is None else f"{self.thumbnail_p99:.3f}s"
        lines = [
            "invariants held" if self.ok else f"INVARIANT BROKEN: {self.violation}",
            f"pictures captured      {self.pictures}",
            f"thumbnail latency      p50 {p50}  p99 {p99}  (capture -> thumbnail at each peer)",
            f"originals completed    {self.originals_completed}",
            f"dispersals             {self.dispersals}",
            f"collections            {self.collections}",
            f"rejects                {self.rejects}",
            f"resumes                {self.resumes}",
            f"read-outs verified     {self.readouts_verified}",
            f"bytes moved            {self.bytes_moved}",
            f"events processed       {self.events}",
            f"virtual seconds        {self.virtual_seconds:.1f}",
            f"trace hash             {self.trace_hash}",
        ]
        told = {k[len("liar.told."):]: n for k, n in self.counters.items() if k.startswith("liar.told.")}
        if told:
            cut = {k[len("liar.cut_off."):]: n for k, n in self.counters.items()
                   if k.startswith("liar.cut_off.")}
            lines.append(f"lies told              {sum(told.values())}: "
                         + ", ".join(f"{k} {n}" for k, n in sorted(told.items())))
            lines.append(f"liar cut off           {sum(cut.values())} times: "
                         + ", ".join(f"{k} {n}" for k, n in sorted(cut.items())))
        if not self.ok:
            lines.append(f"replay with: cammesh sim --replay '{self.scenario}'")
        return "\n".join(lines)


def build(world: World) -> Report:
    m = world.metrics
    c = m.counters
    violation = world.violation
    return Report(
        scenario=world.scenario.to_json(),
        violation=None if violation is None else str(violation),
        violation_rule=None if violation is None else violation.rule,
        thumbnail_p50=percentile(m.thumbnail_latency, 0.50),
        thumbnail_p99=percentile(m.thumbnail_latency, 0.99),
        pictures=len(world.pictures),
        originals_completed=len(m.original_arrivals),
        dispersals=c.get("event.Dispersed", 0),
        collections=c.get("event.Collected", 0),
        rejects=c.get("wire.reject", 0),
        resumes=c.get("resumes", 0),
        readouts_verified=c.get("readouts.verified", 0),
        bytes_moved=m.bytes_moved,
        frames=m.frames,
        events=m.events,
        virtual_seconds=world.t,
        trace_hash=world.trace_hash,
        counters=dict(sorted(c.items())),
    )


def timeline_svg(world: World, *, width: int = 900) -> str:
    """An SVG timeline: one row per device, a tick per thumbnail (blue) and original (orange) arrival."""
    m = world.metrics
    rows = len(world.devices)
    row_h = 28
    left, top = 90, 30
    height = top + rows * row_h + 30
    span = max(world.t, 1.0)
    plot_w = width - left - 20

    def x(t: float) -> float:
        return left + plot_w * t / span

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="11">',
        f'<text x="{left}" y="18">thumbnail (blue) and original (orange) arrivals over '
        f"{span:.0f} virtual seconds</text>",
    ]
    for dev in world.devices:
        y = top + dev.index * row_h
        out.append(f'<text x="4" y="{y + 16}">{dev.name}</text>')
        out.append(f'<line x1="{left}" y1="{y + 14}" x2="{left + plot_w}" y2="{y + 14}" stroke="#ddd"/>')
    for pic in world.pictures:
        y = top + pic.camera * row_h
        out.append(f'<circle cx="{x(pic.captured_at):.1f}" cy="{y + 14}" r="2" fill="#333"/>')
    for arrivals, colour, dy in ((m.thumbnail_arrivals, "#1f77b4", 4), (m.original_arrivals, "#ff7f0e", 16)):
        for t, row, _ in arrivals:
            y = top + row * row_h + dy
            out.append(f'<line x1="{x(t):.1f}" y1="{y}" x2="{x(t):.1f}" y2="{y + 8}" stroke="{colour}"/>')
    axis_y = top + rows * row_h + 12
    for k in range(6):
        t = span * k / 5
        out.append(f'<text x="{x(t) - 10:.1f}" y="{axis_y}">{t:.0f}s</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
