"""One meaning per name (issue 15): no two public classes in protocol/, storage/, mesh/, sim/,
nor the harnesses beside them (tests/'s shared modules, bench/), share a name, so that
``Connection``, ``Device`` or ``Mesh`` says one thing wherever it is read.  A test module's
own classes (a ``Rig`` per tests/protocol/test_machine_*.py) never leave it: not counted."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("protocol", "storage", "mesh", "sim", "tests", "bench")

# Names still defined twice, each with the reason it is not renamed yet.
PENDING: dict[str, str] = {}


def public_classes(root: Path, packages: tuple[str, ...]) -> dict[str, list[str]]:
    """Class name -> the modules (as paths) that define a top-level public class of that name."""
    where: dict[str, list[str]] = defaultdict(list)
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            if package == "tests" and path.name.startswith("test_"):
                continue
            for node in ast.parse(path.read_text(), filename=str(path)).body:
                if (isinstance(node, ast.ClassDef) and not node.name.startswith("_")
                        and not node.name.startswith("Test")):  # pytest's groups of tests
                    where[node.name].append(str(path.relative_to(root)))
    return where


def test_no_class_name_means_two_things() -> None:
    twice = {name: paths for name, paths in public_classes(ROOT, PACKAGES).items()
             if len(paths) > 1 and name not in PENDING}
    assert not twice, f"one name, two classes: {twice}"


def test_the_check_finds_a_planted_twin(tmp_path: Path) -> None:
    for package in ("one", "two"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "m.py").write_text("class Device:\n    pass\nclass _Private:\n    pass\n")
    found = public_classes(tmp_path, ("one", "two"))
    assert found["Device"] == ["one/m.py", "two/m.py"]
    assert "_Private" not in found
    # A harness beside the tests counts; a test module's own classes do not.
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "harness.py").write_text("class Device:\n    pass\n")
    (tmp_path / "tests" / "test_x.py").write_text("class Rig:\n    pass\n")
    (tmp_path / "one" / "rig.py").write_text("class Rig:\n    pass\n")
    found = public_classes(tmp_path, ("one", "two", "tests"))
    assert found["Device"] == ["one/m.py", "two/m.py", "tests/harness.py"]
    assert found["Rig"] == ["one/rig.py"]
