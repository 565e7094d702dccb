"""``cammesh sim``: run a seeded scenario (or replay one) and print the report.

Wired into mesh/cli.py by ``add_arguments(parser)`` and ``run(args)``; also
runnable alone as ``python -m sim``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sim import report as rp
from sim.scenario import FAULT_FAMILIES, Scenario, ScenarioError, generate
from sim.world import World


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cameras", type=int, default=3, help="cameras in the mesh (default 3)")
    parser.add_argument("--desks", type=int, default=1, help="desks in the mesh (default 1)")
    parser.add_argument("--pictures", type=int, default=20, help="pictures per camera (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="the one seed everything derives from")
    parser.add_argument(
        "--faults",
        default="",
        help=f"comma-separated fault families: {','.join(FAULT_FAMILIES)} (default none)",
    )
    parser.add_argument("--replay", metavar="FILE_OR_JSON", help="rerun a scenario printed by a failure")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument("--plot", metavar="FILE", help="write an SVG timeline of arrivals")
    parser.add_argument("--save", metavar="FILE", help="write the scenario JSON, for --replay")


def load_scenario(text: str) -> Scenario:
    """A scenario from a file path or a JSON string."""
    stripped = text.strip()
    if not stripped.startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise ScenarioError(f"--replay {text!r} is neither a file nor a JSON object")
        stripped = path.read_text()
    return Scenario.from_json(stripped)


def scenario_from(args: argparse.Namespace) -> Scenario:
    if args.replay:
        return load_scenario(args.replay)
    faults = tuple(f for f in (s.strip() for s in args.faults.split(",")) if f)
    scenario = generate(args.seed, cameras=args.cameras, pictures=args.pictures, desks=args.desks, faults=faults)
    scenario.check()
    return scenario


def run(args: argparse.Namespace) -> int:
    """Run and print; exit status 0 when every invariant held, 1 when one broke, 2 for bad input."""
    try:
        scenario = scenario_from(args)
    except ScenarioError as exc:
        print(f"cammesh sim: {exc}", file=sys.stderr)
        return 2
    if args.save:
        Path(args.save).write_text(scenario.to_json() + "\n")
    world = World(scenario).run()
    report = rp.build(world)
    if args.plot:
        Path(args.plot).write_text(rp.timeline_svg(world))
    if args.json:
        print(json.dumps(report.to_dict(), sort_keys=True))
    else:
        print(report.text())
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cammesh sim", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


def add_sim(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``cammesh sim`` with the main command line (mesh/cli.py)."""
    parser = subparsers.add_parser(
        "sim",
        help="simulate a mesh deterministically and check its invariants",
        description="Run many devices on virtual time from one seed, with crashes, partitions, "
        "link breaks and full cards, checking after every step that no picture is lost, "
        "thumbnails precede originals, no card passes its capacity and read-outs are exact. "
        "A failure prints a scenario that --replay reruns identically.",
    )
    add_arguments(parser)
    parser.set_defaults(run=run)


COMMANDS = [add_sim]
