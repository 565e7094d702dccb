"""Start-up of `cammesh node` (issue 13): it imports only what serving needs, and says when it is
advertised.  Times are bench/startup.py's business; these tests check what is loaded, in order.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mesh.cli import COMMAND_MODULES, build_parser, command_named
from mesh.desk_demo import DeviceSpec, make_mesh
from protocol.messages import Role
from tests.integration.nodes import wait_until

ROOT = Path(__file__).resolve().parents[2]
# Loaded on demand only: the desk's web server, movie decoding, picture decoding, terminal
# rendering, the pairing PAKE, and the simulator.
HEAVY = {"PIL", "av", "hypercorn", "rich", "spake2", "sim", "numpy"}


def test_the_command_table_names_what_each_module_registers() -> None:
    for module, names in COMMAND_MODULES.items():
        subparsers = argparse.ArgumentParser().add_subparsers()
        for register in importlib.import_module(module).COMMANDS:
            register(subparsers)
        assert tuple(subparsers.choices) == names, module


def test_a_command_line_builds_only_its_commands_parser() -> None:
    assert command_named(["-v", "node", "CARD", "--peer", "x:1"]) == "node"
    node_only = build_parser("node")
    assert node_only.parse_args(["node", "card"]).run.__name__ == "run_node_command"
    with pytest.raises(SystemExit):
        node_only.parse_args(["demo"])  # not registered: `cammesh demo` builds its own
    everything = build_parser(None)
    assert everything.parse_args(["demo", "--quick"]).run is not None


def _imports_until(log: Path, event: str) -> list[str]:
    """The modules ``-X importtime`` reported before the node logged ``event``."""
    modules = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("import time:"):
            name = line.rsplit("|", 1)[-1].strip()
            if name != "package":  # the header line
                modules.append(name)
        elif line.startswith("{") and json.loads(line).get("event") == event:
            return modules
    raise AssertionError(f"no {event} line in {log}")


def test_a_node_listens_and_advertises_without_loading_heavy_modules(tmp_path: Path) -> None:
    (card,) = make_mesh(tmp_path, [DeviceSpec("cam", Role.CAMERA, 1 << 30)])
    log = tmp_path / "node.log"
    with log.open("wb") as err:
        node = subprocess.Popen(
            [sys.executable, "-X", "importtime", "-m", "mesh.cli", "node", str(card),
             "--log-json", "--no-live", "--listen=127.0.0.1:0", "--interface=127.0.0.1"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def advertised() -> bool:
        assert node.poll() is None, log.read_text(errors="replace")[-3000:]
        return b'"Advertised"' in log.read_bytes()

    try:
        wait_until("the node's Advertised line", advertised)
    finally:
        node.terminate()
        node.wait(timeout=30)
    before_listening = _imports_until(log, "Listening")
    before_advertised = _imports_until(log, "Advertised")
    assert "trio" in before_listening and "zeroconf" in before_advertised  # the check can see
    heavy = sorted({name.split(".")[0] for name in before_advertised} & HEAVY)
    assert not heavy, f"loaded before they were needed: {heavy}"


def test_the_import_client_asks_the_node_before_loading_anything_heavy(tmp_path: Path) -> None:
    """`cammesh import` into a running node: its request leaves before trio, rich, the card
    or the importer load (here no node answers, so it then imports offline, loading them)."""
    probe = """
import sys
from pathlib import Path
import mesh.control
asked = []
def ask(card, request, **options):
    asked.append(sorted({m.split(".")[0] for m in sys.modules}))
    raise mesh.control.NodeNotRunning("no node")
mesh.control.ask = ask
from mesh.cli import main
main(["import", sys.argv[1], sys.argv[2]])
print(" ".join(asked[0]))
"""
    (card,) = make_mesh(tmp_path, [DeviceSpec("cam", Role.CAMERA, 1 << 30)])
    picture = tmp_path / "x.jpg"
    picture.write_bytes(b"not a picture")
    done = subprocess.run([sys.executable, "-c", probe, str(card), str(picture)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded_before_asking = set(done.stdout.split())
    assert "mesh" in loaded_before_asking
    heavy = sorted(loaded_before_asking & (HEAVY | {"trio", "storage", "zeroconf"}))
    assert not heavy, f"loaded before the request: {heavy}"
