"""``cammesh demo --quick`` as a real process: it exits 0 and its timeline tells the whole story in order.

The demo runs three real devices (SPAKE2 pairing, mDNS on 127.0.0.1, mutual TLS)
and checks its own story; this test reads the printed timeline independently.
"""

from __future__ import annotations

import re
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from mesh.demo_timeline import DemoFailed, Timeline

ROOT = Path(__file__).resolve().parents[2]
LINE = re.compile(r"^\s*\+\s*(?P<at>\d+\.\d+)s\s+(?P<device>\w+)\s+(?P<text>.*)$")


def timeline_of(out: str) -> list[tuple[str, str]]:
    return [(m["device"], m["text"]) for m in map(LINE.match, out.splitlines()) if m]


def first(lines: list[tuple[str, str]], device: str, pattern: str) -> int:
    for index, (who, text) in enumerate(lines):
        if who == device and re.search(pattern, text):
            return index
    raise AssertionError(f"no line of {device} matches {pattern!r}")


@pytest.mark.integration
def test_the_quick_demo_tells_the_whole_story_in_order(tmp_path: Path) -> None:
    keep = tmp_path / "cards"
    done = subprocess.run(
        [sys.executable, "-m", "mesh.cli", "demo", "--quick", "--keep", str(keep)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "demo done" in done.stdout
    lines = timeline_of(done.stdout)

    # Thumbnails ahead of originals: every original, held copy or read-out at a device
    # comes after that device's thumbnail of the same picture.
    arrivals = 0
    for index, (device, text) in enumerate(lines):
        m = re.match(r"(?:original (\S+) from|holds (\S+) for)", text) or re.match(
            r"(\S+): .*SHA-256 verified", text)
        if m:
            picture = next(g for g in m.groups() if g)
            arrivals += 1
            assert any(who == device and re.match(rf"thumbnail {picture} from", t)
                       for who, t in lines[:index]), f"{device}: {picture}'s original before its thumbnail"
    assert arrivals >= 5

    # A request jumps the queue; a refusal is honoured.
    asked = first(lines, "bravo", r"asks for (\S+) first")
    wanted = re.search(r"asks for (\S+) first", lines[asked][1])[1]  # type: ignore[index]
    arrived = first(lines, "bravo", rf"original {wanted} from")
    assert asked < arrived < first(lines, "bravo", rf"{wanted} arrived ahead of \S+")
    refused = re.search(r"refuses (\S+):", lines[first(lines, "bravo", r"refuses")][1])[1]  # type: ignore[index]
    assert not any(who == "bravo" and text.startswith(f"original {refused} from") for who, text in lines)

    # The card fills: request, reject, request, accept, stored, freed.
    story = [
        first(lines, "alpha", r"past its \d+% mark"),
        first(lines, "alpha", r"asks desk to hold (\S+) \(dispersal request\)"),
        first(lines, "alpha", r"desk rejects \S+: .*high-water"),
        first(lines, "alpha", r"asks bravo to hold \S+ \(dispersal request\)"),
        first(lines, "alpha", r"bravo accepts \S+, reserving"),
        first(lines, "bravo", r"holds \S+ for alpha"),
        first(lines, "alpha", r"on the dispersion list → bravo; original freed, thumbnail .* kept"),
        # The desk reads a dispersed picture out through its owner; then collection home.
        first(lines, "desk", r"reads out \S+: alpha relays it from its holder bravo"),
        first(lines, "desk", r"SHA-256 verified, byte-identical"),
        first(lines, "alpha", r"collects \S+ home"),
        first(lines, "alpha", r"is home from bravo"),
        first(lines, "bravo", r"released \S+: alpha has it back"),
    ]
    assert story == sorted(story), [lines[i] for i in story]

    # The kept cards agree with the story.
    listing = subprocess.run(
        [sys.executable, "-m", "mesh.cli", "ls", str(keep / "alpha"), "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert listing.returncode == 0, listing.stderr
    assert '"where": "dispersed"' in listing.stdout and '"where": "local"' in listing.stdout


def test_a_kept_folder_that_is_not_empty_is_refused_with_a_reason(tmp_path: Path) -> None:
    (tmp_path / "something").write_text("mine")
    done = subprocess.run(
        [sys.executable, "-m", "mesh.cli", "demo", "--quick", "--keep", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode != 0
    assert "not empty" in done.stdout + done.stderr
    assert (tmp_path / "something").read_text() == "mine"


async def test_a_step_that_does_not_happen_fails_naming_it() -> None:
    timeline = Timeline(Console(file=StringIO()), {}, {})
    with pytest.raises(DemoFailed, match=r"the holder's answer did not happen within 0\.2 s"):
        await timeline.wait_for("the holder's answer", lambda: False, 0.2)


async def test_the_thumbnail_first_check_catches_an_original_ahead_of_its_thumbnail() -> None:
    timeline = Timeline(Console(file=StringIO()), {}, {"a" * 64: "IMG_A"})
    timeline.add("bravo", "thumbnail", "thumbnail IMG_A from alpha", image="a" * 64)
    timeline.add("bravo", "original", "original IMG_A from alpha", image="a" * 64)
    assert timeline.thumbnail_first() == (1, [])
    timeline.add("desk", "original", "original IMG_A from alpha", image="a" * 64)
    checked, problems = timeline.thumbnail_first()
    assert checked == 2 and problems == ["desk got IMG_A's original before its thumbnail"]


def test_failures_inside_trio_exception_groups_are_explained_and_bugs_are_not() -> None:
    from mesh.demo import _expected_failure

    inner = BaseExceptionGroup("nursery", [DemoFailed("the desk's reject did not happen within 30 s")])
    assert _expected_failure(BaseExceptionGroup("outer", [inner])) == (
        "the desk's reject did not happen within 30 s")
    assert _expected_failure(OSError(98, "Address already in use")) == "Address already in use"
    assert _expected_failure(BaseExceptionGroup("nursery", [inner, ValueError("a bug")])) is None
