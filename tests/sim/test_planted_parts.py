"""The planted-bug mechanism (sim/planted.py): bugs are subclasses the suite hands a Node.

Production code holds no switch for a planted bug once it moved here: protocol/ never
names it, a default ``Parts`` holds only real classes, and ``parts_for`` plants exactly
the parts the names ask for.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from protocol.config import PLANTED_BUGS
from protocol.parts import Parts
from sim import planted

PROTOCOL = Path(__file__).resolve().parents[2] / "protocol"


def test_every_planted_bug_is_a_part() -> None:
    assert set(planted.PLANTED) == PLANTED_BUGS


@pytest.mark.parametrize("bug", sorted(planted.PLANTED))
def test_a_bug_moved_to_the_simulator_is_named_nowhere_in_protocol(bug: str) -> None:
    named = [p.name for p in sorted(PROTOCOL.glob("*.py"))
             if p.name != "config.py" and bug in p.read_text()]
    assert not named, f"{bug!r} is planted by sim/planted.py but still named in {named}"


@pytest.mark.parametrize("bug", sorted(planted.PLANTED))
def test_parts_for_plants_the_one_part_a_bug_names(bug: str) -> None:
    part, cls = planted.PLANTED[bug]
    parts = planted.parts_for(frozenset({bug}))
    for f in dataclasses.fields(Parts):
        real = f.default
        assert getattr(parts, f.name) is (cls if f.name == part else real)
    assert issubclass(cls, getattr(Parts(), part)) and cls is not getattr(Parts(), part)


def test_no_bug_no_planted_part_and_an_unknown_name_is_refused() -> None:
    assert planted.parts_for(frozenset()) == Parts()
    with pytest.raises(ValueError, match="unknown planted bugs"):
        planted.parts_for(frozenset({"no-such-bug"}))
