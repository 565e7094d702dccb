"""The mutation score of the fast suites over issue 14's modules, as JSON (run by hand, never in CI).

mutmut (the ``mutation`` extra) plants one small change at a time in a module
(``[tool.mutmut]`` in pyproject.toml says which) and runs the tests that reach
the changed function: tests/protocol, tests/sim, tests/contract, tests/storage
under the ``mutation`` Hypothesis profile (derandomised, few examples; see
tests/conftest.py), so a verdict is cheap and the same on every run.

    nice -n 15 .venv/bin/python bench/mutation.py [--module NAME ...] [--report] [--survivors]
        [--max-children N]

``NAME`` is a module's stem or path (``scheduler``, ``storage/card.py``); none
means every module in ``[tool.mutmut] only_mutate``.  ``--report`` only reads
the results of earlier runs (``mutants/*.meta``); ``--survivors`` reruns just
the mutants that were not killed last time (after a new kill-test).

A mutant triaged as equivalent is named, in backticks, in a ``## `<mutant id>```
heading of ``tests/mutation/triage_<stem>.md`` with the reason no behaviour can
tell it apart.  score = killed / (generated - equivalent); the target is 0.90.

Each module gets a mutmut run of its own, one after the other.  mutmut runs the
mutants of one invocation cheapest first (by the summed duration of the tests that
reach each mutated function), so in one run over every module the mutants of
protocol/connection.py, whose functions every simulator test calls, came last of
3483 and a run cut short left them "not checked" (its 0.016); a run per module
finishes each module it starts, and reports ``not_checked`` for any it did not.

mutmut leaves decorated functions alone (it cannot trampoline through a
decorator), so storage/card.py's ``@_locked`` methods get no mutants; the
report lists them per module as ``not_mutated_decorated`` so the gap is visible.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TRIAGE = ROOT / "tests" / "mutation"
TARGET_SCORE = 0.90
MAX_CHILDREN = 2  # the machine is shared; mutmut would take every core
PROFILE = "mutation"

# mutmut's exit-code verdicts (mutmut/stats.py), folded into the report's buckets.
KILLED = {1, 3, 37}
SURVIVED = {0}
TIMEOUT = {36, -24, 24, 152, 255}
NO_TESTS = {5, 33}


def mutmut_config() -> dict[str, Any]:
    config: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    return config


def configured_modules() -> list[str]:
    return list(mutmut_config()["only_mutate"])


def resolve(names: list[str]) -> list[str]:
    modules = configured_modules()
    if not names:
        return modules
    chosen = []
    for name in names:
        hits = [m for m in modules if m == name or Path(m).stem == name or m == name + ".py"]
        if not hits:
            raise SystemExit(f"{name!r} is not in [tool.mutmut] only_mutate: {modules}")
        chosen += hits
    return chosen


def dotted(module: str) -> str:
    return module.removesuffix(".py").replace("/", ".")


def meta(module: str) -> dict[str, Any]:
    path = ROOT / "mutants" / (module + ".meta")
    if not path.exists():
        return {"exit_code_by_key": {}}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def run_mutmut(names: list[str], max_children: int) -> int:
    env = dict(os.environ, CAMMESH_PROFILE=PROFILE)
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    cmd = ["nice", "-n", "15", mutmut, "run", "--max-children", str(max_children), *names]
    print("$", " ".join(cmd), file=sys.stderr)
    return subprocess.call(cmd, cwd=ROOT, env=env, stdout=sys.stderr)


def equivalents(module: str) -> set[str]:
    """Mutant ids named in ``## `id``` headings of the module's triage file."""
    path = TRIAGE / f"triage_{Path(module).stem}.md"
    if not path.exists():
        return set()
    return set(re.findall(r"^##+\s*`([^`]+__mutmut_\d+)`", path.read_text(), re.MULTILINE))


def function_lines(module: str) -> tuple[dict[str, int], list[str]]:
    """mutmut's mangled name (``x_f``, ``xǁClassǁm``) -> the def's line; and decorated ones."""
    tree = ast.parse((ROOT / module).read_text())
    lines: dict[str, int] = {}
    decorated: list[str] = []

    def visit(body: list[ast.stmt], cls: str | None) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef) and cls is None:
                visit(node.body, node.name)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"xǁ{cls}ǁ{node.name}" if cls else f"x_{node.name}"
                lines[name] = node.lineno
                if node.decorator_list and not _harmless(node.decorator_list):
                    decorated.append(f"{cls}.{node.name}" if cls else node.name)

    visit(tree.body, None)
    return lines, decorated


def _harmless(decorators: list[ast.expr]) -> bool:
    # mutmut mutates a function under one lone @staticmethod or @classmethod and skips every
    # other decorated one, @property included (mutmut/mutation/file_mutation.py)
    return (
        len(decorators) == 1
        and isinstance(decorators[0], ast.Name)
        and decorators[0].id in {"staticmethod", "classmethod"}
    )


def locate(module: str, key: str, lines: dict[str, int], source: list[str]) -> dict[str, Any]:
    """The function and the first source line a mutant changes."""
    mangled = key.removeprefix(dotted(module) + ".").rsplit("__mutmut_", 1)[0]
    function = mangled.removeprefix("x_").replace("xǁ", "").replace("ǁ", ".")
    start = lines.get(mangled, 1)
    line = start
    diff = diff_of(module, key)
    removed = [d[1:] for d in diff.splitlines() if d.startswith("-") and not d.startswith("---")]
    if removed:
        for number in range(start, len(source) + 1):
            if source[number - 1].strip() == removed[0].strip():
                line = number
                break
    change = [d for d in diff.splitlines() if d[:1] in "+-" and d[:3] not in ("+++", "---")]
    return {"id": key, "function": function, "line": line, "change": change}


def diff_of(module: str, key: str) -> str:
    """mutmut's own diff of one mutant against its function (as ``mutmut show`` prints it)."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    cwd = os.getcwd()
    os.chdir(ROOT)  # mutmut reads mutants/ relative to the project
    try:
        return get_diff_for_mutant(key, path=module)
    except Exception as exc:  # a mutant mutmut can no longer find: say so, do not stop
        return f"(no diff: {exc})"
    finally:
        os.chdir(cwd)


def report(module: str) -> dict[str, Any]:
    codes: dict[str, int | None] = meta(module)["exit_code_by_key"]
    equivalent = equivalents(module)
    lines, decorated = function_lines(module)
    source = (ROOT / module).read_text().splitlines()
    killed = [k for k, c in codes.items() if c in KILLED]
    survived = [k for k, c in codes.items() if c in SURVIVED]
    timed_out = [k for k, c in codes.items() if c in TIMEOUT]
    no_tests = [k for k, c in codes.items() if c in NO_TESTS]
    unchecked = [k for k, c in codes.items() if c is None]
    other = [k for k in codes if k not in {*killed, *survived, *timed_out, *no_tests, *unchecked}]
    stale = sorted(equivalent - set(codes))
    equivalent &= set(codes)
    # A timeout counts as a kill (the mutant hung the suite); equivalents leave the denominator.
    denominator = len(codes) - len(equivalent)
    detected = len(killed) + len(timed_out)
    open_ = [k for k in [*survived, *no_tests, *other] if k not in equivalent]
    return {
        "module": module,
        "generated": len(codes),
        "killed": len(killed),
        "survived": len(survived),
        "timed_out": len(timed_out),
        "no_tests": len(no_tests),
        "not_checked": len(unchecked),
        "suspicious": len(other),
        "equivalent": len(equivalent),
        "score": round(detected / denominator, 4) if denominator else None,
        "target": TARGET_SCORE,
        "ratio_to_target": round(detected / denominator / TARGET_SCORE, 4) if denominator else None,
        "meets_target": bool(denominator) and detected / denominator >= TARGET_SCORE,
        "not_mutated_decorated": decorated,
        "triage_names_unknown_mutants": stale,
        "open_survivors": [locate(module, k, lines, source) for k in sorted(open_, key=_order)],
    }


def _order(key: str) -> tuple[str, int]:
    name, _, number = key.rpartition("__mutmut_")
    return (name, int(number))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", action="append", default=[], help="stem or path; repeatable")
    parser.add_argument("--report", action="store_true", help="read earlier results, run nothing")
    parser.add_argument("--survivors", action="store_true", help="rerun only the unkilled")
    parser.add_argument("--max-children", type=int, default=MAX_CHILDREN, choices=(1, 2),
                        help="mutmut workers (the machine is shared)")
    args = parser.parse_args()
    modules = resolve(args.module)
    config = mutmut_config()
    exit_code = 0
    for module in [] if args.report else modules:
        if args.survivors:
            names = [
                k
                for k, c in meta(module)["exit_code_by_key"].items()
                if c not in KILLED | TIMEOUT and k not in equivalents(module)
            ]
        else:
            names = [dotted(module) + ".*"]
        if names:
            exit_code = run_mutmut(names, args.max_children) or exit_code
    print(
        json.dumps(
            {
                "tool": "mutmut",
                "hypothesis_profile": PROFILE,
                "suites": config["pytest_add_cli_args_test_selection"],
                "pytest_args": config["pytest_add_cli_args"],
                "max_children": args.max_children,
                "mutmut_exit_code": exit_code,
                "modules": [report(m) for m in modules],
            },
            indent=2,
            ensure_ascii=False,
        )
    )


if __name__ == "__main__":
    main()
