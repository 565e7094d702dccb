"""The check -> test table is complete: a new check or refusal in protocol/ without a test fails here."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

from tests.protocol.check_sites import sites
from tests.protocol.checks import TABLE
from tests.protocol.test_checks import GUARDED, LIES, site_of

ROOT = Path(__file__).resolve().parents[2]


@cache
def functions(path: str) -> frozenset[str]:
    tree = ast.parse((ROOT / path).read_text())
    return frozenset(
        node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.ClassDef)
    )


def test_every_check_and_refusal_in_protocol_has_a_test() -> None:
    found = sites()
    missing = sorted(set(found) - set(TABLE))
    assert not missing, (
        "checks or refusals in protocol/ with no test in tests/protocol/checks.py: "
        + ", ".join(f"{k} ({found[k].module}:{found[k].line})" for k in missing)
    )
    stale = sorted(set(TABLE) - set(found))
    assert not stale, f"tests/protocol/checks.py names sites protocol/ no longer has: {stale}"


def test_every_test_the_table_names_exists() -> None:
    for key, reached in TABLE.items():
        for ref in filter(None, (reached.test, reached.sim)):
            path, _, name = ref.partition("::")
            function, _, param = name.partition("[")
            assert function in functions(path), f"{key}: {ref} names no test"
            if param:
                assert param.rstrip("]") in LIES, f"{key}: {ref} names no lie in test_checks.LIES"


def test_every_lie_of_test_checks_is_in_the_table_and_every_guarded_one_is_shown_needed() -> None:
    found = sites()
    for key in LIES:
        assert site_of(key) in TABLE, key
    for key, reached in TABLE.items():
        if reached.test.startswith("tests/protocol/test_checks.py::test_each_check_refuses_its_lie["):
            lie = reached.test.split("[", 1)[1].rstrip("]")
            if site_of(lie) == key and found[key].guarded:
                assert lie in GUARDED, f"{key} is an `if ...: raise` not shown needed"


def test_notes_say_why_a_site_is_reached_only_in_a_way_of_its_own() -> None:
    for key, reached in TABLE.items():
        if reached.note:
            assert reached.note.split(":")[0] in ("shadowed", "unreachable", "backstop"), key


def test_a_check_in_a_sub_package_of_protocol_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.protocol import check_sites

    package = tmp_path / "protocol" / "owner"
    package.mkdir(parents=True)
    (package / "machine.py").write_text(
        "class Owner:\n"
        "    def on_stored(self, ok):\n"
        "        if not ok:\n"
        "            raise RemoteProtocolError('early', code='premature-stored')\n"
    )
    monkeypatch.setattr(check_sites, "PROTOCOL", tmp_path / "protocol")
    found = check_sites.sites()
    assert list(found) == ["premature-stored@Owner.on_stored"]
    assert found["premature-stored@Owner.on_stored"].module == "protocol.owner.machine"
    assert found["premature-stored@Owner.on_stored"].guarded
