"""``cammesh mesh create/open/join/show`` as real processes on loopback: codes, exit codes, members."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mesh.pairing import load_membership
from tests.mesh.test_discovery import _multicast_on_loopback

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 120.0  # bounds a hung process, never a speed assertion


def cammesh(*args: str | Path, timeout: float = WAIT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mesh.cli", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def new_card(folder: Path, role: str = "camera") -> Path:
    """A fresh card whose device name is unique, so parallel runs' pairing windows never clash."""
    name = f"{role}-{secrets.token_hex(3)}"
    result = cammesh("init", folder / name, "--name", name, "--capacity", "1GB", "--role", role)
    assert result.returncode == 0, result.stderr
    return folder / name


@dataclass
class Window:
    """A running `mesh create` or `mesh open`, with the code and port it printed."""

    proc: subprocess.Popen[str]
    code: str
    port: int
    lines: list[str]

    def finish(self) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=WAIT_S)
        return self.proc.returncode, "".join(self.lines) + out, err


@pytest.fixture
def windows() -> Iterator[list[Window]]:
    opened: list[Window] = []
    yield opened
    for window in opened:
        if window.proc.poll() is None:
            window.proc.kill()
        window.proc.communicate(timeout=WAIT_S)


def open_window(windows: list[Window], command: str, card: Path, *extra: str) -> Window:
    args = [sys.executable, "-m", "mesh.cli", "mesh", command, str(card),
            "--listen", "127.0.0.1:0", "--window", "120", *extra]
    if _multicast_on_loopback():
        args += ["--interface", "127.0.0.1"]
    else:
        args.append("--no-discovery")
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    lines: list[str] = []
    code = port = None
    while port is None:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"`mesh {command}` ended before pairing: "
                                 f"{''.join(lines)}{proc.communicate()[1]}")
        lines.append(line)
        if found := re.match(r"pairing code: (\S+)$", line.strip()):
            code = found.group(1)
        if found := re.match(r"pairing on [\d.]+:(\d+) ", line):
            port = int(found.group(1))
    assert code is not None
    window = Window(proc, code, port, lines)
    windows.append(window)
    return window


def show(card: Path) -> dict[str, object]:
    result = cammesh("mesh", "show", card, "--json")
    assert result.returncode == 0, result.stderr
    doc: dict[str, object] = json.loads(result.stdout)
    return doc


def names(card: Path) -> set[str]:
    members = show(card)["members"]
    assert isinstance(members, list)
    return {m["name"] for m in members}


def test_create_then_two_joins_and_show_lists_all_three(tmp_path: Path, windows: list[Window]) -> None:
    a, b, c = new_card(tmp_path), new_card(tmp_path, "desk"), new_card(tmp_path)
    window = open_window(windows, "create", a, "--joins", "2")
    joined = cammesh("mesh", "join", b, window.code, "--host", f"127.0.0.1:{window.port}")
    assert joined.returncode == 0, joined.stderr
    # The second joiner finds the window by mDNS where loopback multicast works.
    where = (["--from", a.name, "--interface", "127.0.0.1"] if _multicast_on_loopback()
             else ["--host", f"127.0.0.1:{window.port}"])
    joined = cammesh("mesh", "join", c, window.code.upper().replace("-", " "), *where)
    assert joined.returncode == 0, joined.stderr
    code, out, err = window.finish()
    assert code == 0, err
    assert "2 device(s) joined" in out and out.count("joined: ") == 2
    everyone = {a.name, b.name, c.name}
    assert names(a) == names(c) == everyone
    assert names(b) == {a.name, b.name}  # b meets c through the pinned TLS hello later
    doc = show(a)
    members = doc["members"]
    assert isinstance(members, list)
    ids = {m["device_id"] for m in members}
    assert len(ids) == 3 and all(len(m["short_id"]) == 9 for m in members)
    assert {m["name"]: m["role"] for m in members}[b.name] == "desk"
    assert [m["name"] for m in members if m["self"]] == [a.name]
    hashes = {show(card)["mesh_hash"] for card in (a, b, c)}
    assert len(hashes) == 1
    table = cammesh("mesh", "show", a)
    assert table.returncode == 0 and all(card.name in table.stdout for card in (a, b, c))


def test_a_wrong_code_exits_2_with_a_clear_message_and_pins_nothing(
    tmp_path: Path, windows: list[Window]
) -> None:
    a, b = new_card(tmp_path), new_card(tmp_path)
    window = open_window(windows, "create", a, "--joins", "1")
    wrong = "tttt-tttt" if window.code != "tttt-tttt" else "uuuu-uuuu"
    result = cammesh("mesh", "join", b, wrong, "--host", f"127.0.0.1:{window.port}")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "refused the pairing code" in result.stderr and "2 attempt(s) left" in result.stderr
    assert not (b / "mesh" / "peers.json").exists()
    assert [p.name for p in load_membership(a).peers] == []
    # One wrong guess does not close the window: the right code still gets in.
    result = cammesh("mesh", "join", b, window.code, "--host", f"127.0.0.1:{window.port}")
    assert result.returncode == 0, result.stderr
    code, out, _ = window.finish()
    assert code == 0 and "wrong code from" in out and f"joined: {b.name}" in out


def test_the_window_closes_after_too_many_wrong_codes(tmp_path: Path, windows: list[Window]) -> None:
    a, b = new_card(tmp_path), new_card(tmp_path)
    window = open_window(windows, "create", a, "--wrong-codes", "2")
    for _ in range(2):
        result = cammesh("mesh", "join", b, "tttt-tttt", "--host", f"127.0.0.1:{window.port}")
        assert result.returncode == 2
    code, _, err = window.finish()
    assert code == 2 and "pairing closed after 2 wrong codes" in err
    result = cammesh("mesh", "join", b, window.code, "--host", f"127.0.0.1:{window.port}",
                     "--timeout", "10")
    assert result.returncode == 2 and "cannot reach a pairing device" in result.stderr


def test_open_admits_a_device_into_an_existing_mesh(tmp_path: Path, windows: list[Window]) -> None:
    a, b, c = new_card(tmp_path), new_card(tmp_path), new_card(tmp_path)
    first = open_window(windows, "create", a, "--joins", "1")
    assert cammesh("mesh", "join", b, first.code, "--host", f"127.0.0.1:{first.port}").returncode == 0
    assert first.finish()[0] == 0
    again = open_window(windows, "open", b, "--joins", "1")  # any member can admit
    assert again.code != first.code
    result = cammesh("mesh", "join", c, again.code, "--host", f"127.0.0.1:{again.port}")
    assert result.returncode == 0, result.stderr
    assert again.finish()[0] == 0
    assert names(c) == {a.name, b.name, c.name} == names(b)
    assert show(c)["mesh_hash"] == show(a)["mesh_hash"]


def test_mistakes_are_one_line_and_exit_2(tmp_path: Path) -> None:
    a = new_card(tmp_path)
    for args, message in [
        (("mesh", "show", a), "belongs to no mesh"),
        (("mesh", "open", a, "--window", "1"), "belongs to no mesh"),
        (("mesh", "join", a, "abc"), "too short"),
        (("mesh", "create", tmp_path / "nothing"), "no device identity"),
        (("mesh", "create", a, "--listen", "here:there"), "not HOST:PORT"),
    ]:
        result = cammesh(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (a / "mesh" / "peers.json").exists()  # the bad --listen made no mesh
    assert cammesh("mesh", "create", a, "--window", "0").returncode == 0
    result = cammesh("mesh", "create", a, "--window", "0")
    assert result.returncode == 2 and "already belongs to a mesh" in result.stderr


def test_help_explains_the_ceremony() -> None:
    result = cammesh("mesh", "--help")
    assert result.returncode == 0
    assert all(word in result.stdout for word in ("create", "join", "open", "show", "code"))
    result = cammesh("mesh", "join", "--help")
    assert result.returncode == 0 and "--host" in result.stdout and "mDNS" in result.stdout
