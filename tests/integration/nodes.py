"""Real `cammesh node` processes for the field tests and the field benchmark.

A ``NodeProcess`` runs ``python -m mesh.cli node CARD --log-json`` (optionally inside a
network namespace), keeps its structured log in a file, and reads it back as events.
Waits are bounded polls, never timed assertions: a slow machine only makes them wait longer.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image

from mesh.control import NodeNotRunning, ask
from mesh.errors import MeshError
from storage.samples import encode_sample, sample_exif

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 120.0  # the most any one wait may take on a loaded, shared machine

T = TypeVar("T")


class WaitedTooLong(AssertionError):
    pass


def wait_until(what: str, check: Callable[[], T | None], *, timeout: float = WAIT_S,
               every: float = 0.1) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise WaitedTooLong(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(every)


@dataclass
class NodeProcess:
    """One `cammesh node` process on a card; ``log`` is its JSON log file."""

    card: Path
    args: Sequence[str] = ()
    netns: str | None = None
    log: Path = field(init=False)
    proc: subprocess.Popen[bytes] | None = None
    runs: int = 0

    def __post_init__(self) -> None:
        self.log = self.card.parent / f"{self.card.name}.log"

    def start(self) -> NodeProcess:
        command = [sys.executable, "-m", "mesh.cli", "node", str(self.card), "--log-json",
                   "--no-live", *self.args]
        if self.netns is not None:
            command = ["ip", "netns", "exec", self.netns, *command]
        self.runs += 1
        with self.log.open("ab") as out:
            out.write(json.dumps({"t": time.time(), "msg": f"--- run {self.runs}",
                                  "event": "Run", "run": self.runs}).encode() + b"\n")
            out.flush()
            self.proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                                         stderr=out, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        return self

    def wait_ready(self, *, every: float = 0.1) -> dict[str, Any]:
        """Its first answer on the control socket, asked every ``every`` seconds."""
        def up() -> dict[str, Any] | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"the node on {self.card} exited ({self.proc.returncode}):\n"
                                     + self.log.read_text()[-3000:])
            try:
                return self.ask({"op": "status"}, timeout=10)
            except (NodeNotRunning, OSError):
                return None

        return wait_until(f"the node on {self.card.name} to answer", up, every=every)

    def ask(self, request: dict[str, Any], *, timeout: float = 60.0) -> dict[str, Any]:
        return ask(self.card, request, timeout=timeout)

    def images(self) -> dict[str, dict[str, Any]]:
        return {i["image_id"]: i for i in self.ask({"op": "ls"})["images"]}

    def events(self, run: int | None = None) -> list[dict[str, Any]]:
        """The node events in its log, in order (of one run when ``run`` is given)."""
        out: list[dict[str, Any]] = []
        current = 0
        for line in self.log.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                doc = json.loads(line)
            except ValueError:
                continue  # a line torn by SIGKILL
            if doc.get("event") == "Run":
                current = doc["run"]
            elif "event" in doc and (run is None or run == current):
                out.append(doc)
        return out

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM, and SIGKILL if it does not stop within a while."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)


def ids_where(node: NodeProcess, where: str) -> set[str]:
    try:
        return {i for i, rec in node.images().items() if rec["where"] == where}
    except (MeshError, OSError):
        return set()


def first_index(events: list[dict[str, Any]], name: str, image_id: str,
                **match: Any) -> int | None:
    for index, doc in enumerate(events):
        if doc["event"] == name and doc.get("image_id") == image_id and all(
            doc.get(k) == v for k, v in match.items()
        ):
            return index
    return None


def write_pictures(folder: Path, count: int, *, side: int, seed: int) -> list[Path]:
    """``count`` distinct grainy JPEGs with EXIF thumbnails; ``side`` 1800 gives about 1.5 MB."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        size = (side, side * 2 // 3)
        grain = Image.effect_noise(size, 60).convert("RGB")
        base = Image.linear_gradient("L").rotate(37 * (index + seed)).resize(size).convert("RGB")
        picture = Image.blend(base, grain, 0.5)
        path = folder / f"IMG_{seed}_{index:04d}.JPG"
        path.write_bytes(encode_sample(picture, sample_exif(index, seed=seed), quality=95))
        paths.append(path)
    return paths
