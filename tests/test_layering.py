"""The direction of imports (STYLE.md rule 1): protocol/ is sans-IO, storage/ knows no network."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# protocol/ may import only the standard library's pure parts, msgpack and msgspec.
PROTOCOL_FORBIDDEN = {
    "socket", "ssl", "select", "selectors", "asyncio", "trio", "threading", "multiprocessing",
    "concurrent", "subprocess", "time", "sqlite3", "os", "io", "shutil", "tempfile", "pathlib",
    "zeroconf", "PIL", "cryptography", "storage", "mesh", "sim",
}
STORAGE_FORBIDDEN = {"socket", "ssl", "asyncio", "trio", "zeroconf", "mesh", "sim"}
FORBIDDEN_CALLS = {"open"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def uses_global_random(path: Path) -> list[str]:
    """Calls such as random.random() or random.choice(): the module-level, shared generator."""
    tree = ast.parse(path.read_text(), filename=str(path))
    bad = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "random"
            and node.attr != "Random"
        ):
            bad.append(f"{path.name}:{node.lineno} random.{node.attr}")
        if isinstance(node, ast.ImportFrom) and node.module == "random":
            bad += [f"{path.name}:{node.lineno} from random import {a.name}"
                    for a in node.names if a.name != "Random"]
    return bad


def file_io_calls(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        f"{path.name}:{node.lineno} {node.func.id}()"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in FORBIDDEN_CALLS
    ]


def sources(package: str) -> list[Path]:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no sources found under {package}/"
    return files


@pytest.mark.parametrize("path", sources("protocol"), ids=lambda p: p.name)
def test_protocol_is_sans_io(path: Path) -> None:
    bad = imports_of(path) & PROTOCOL_FORBIDDEN
    assert not bad, f"protocol/{path.name} imports {sorted(bad)}"
    assert not uses_global_random(path)
    assert not file_io_calls(path)


@pytest.mark.parametrize("path", sources("storage"), ids=lambda p: p.name)
def test_storage_knows_no_network(path: Path) -> None:
    bad = imports_of(path) & STORAGE_FORBIDDEN
    assert not bad, f"storage/{path.name} imports {sorted(bad)}"


def test_checker_catches_a_planted_violation(tmp_path: Path) -> None:
    """The checks above must be able to fail."""
    bad = tmp_path / "bad.py"
    bad.write_text("import socket\nimport random\nx = random.random()\nopen('f')\n")
    assert imports_of(bad) & PROTOCOL_FORBIDDEN == {"socket"}
    assert uses_global_random(bad)
    assert file_io_calls(bad)


# The node's sub-machines (issue 15): each owns one conversation and returns effects; only
# protocol/node.py routes between them, so none imports the node or a sibling machine.
MACHINES = (
    "collections", "dispersal", "holding", "inbound", "keepalive", "marks", "pulls", "readout",
    "serving", "strips", "sync",
)


def modules_imported(path: Path) -> set[str]:
    """Every module a file imports, in full (``protocol.node``), TYPE_CHECKING ones too."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def machine_violations(path: Path, machine: str) -> set[str]:
    forbidden = {"protocol.node"} | {f"protocol.{m}" for m in MACHINES if m != machine}
    return modules_imported(path) & forbidden


@pytest.mark.parametrize("machine", MACHINES)
def test_a_sub_machine_imports_neither_the_node_nor_a_sibling(machine: str) -> None:
    bad = machine_violations(ROOT / "protocol" / f"{machine}.py", machine)
    assert not bad, f"protocol/{machine}.py imports {sorted(bad)}: tell the node, it routes"


def test_the_machine_check_catches_a_planted_import(tmp_path: Path) -> None:
    bad = tmp_path / "pulls.py"
    bad.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from protocol.node import Node\n"
        "from protocol import node\n"
    )
    assert machine_violations(bad, "pulls") == {"protocol.node"}
