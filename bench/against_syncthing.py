"""Syncthing on the same corpus and link as bench/field.py, for its ``--against syncthing``.

Two ``syncthing serve`` processes (Debian's package), configured here headless from a
generated config: one send-only folder to one receive-only folder, each device dialling the
other's namespace (or loopback) address; global discovery, local discovery, relays, NAT
traversal, usage reporting, crash reporting, upgrades and the GUI all off.  The pictures are
in the send folder when the processes start, as they are on the sender's card for our
default mode; the clock runs from both processes started to the last file complete (renamed
to its name) in the receive folder.  CPU is each process tree's user + system time.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

PORT = 22000
TIMEOUT_S = 1200.0


def why_no_syncthing() -> str | None:
    if shutil.which("syncthing") is None:
        return "syncthing is not installed (Debian package `syncthing`); skipped"
    return None


def version() -> str:
    out = subprocess.run(["syncthing", "--version"], capture_output=True, text=True).stdout
    return out.split(" (")[0].strip()


def _generate(home: Path) -> str:
    done = subprocess.run(["syncthing", "generate", f"--home={home}", "--no-default-folder"],
                          capture_output=True, text=True, check=True, env=_env(home))
    found = re.search(r"Device ID: ([A-Z0-9-]+)", done.stdout + done.stderr)
    assert found, done.stdout + done.stderr
    return found.group(1)


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "HOME": str(home), "STNODEFAULTFOLDER": "1", "STNOUPGRADE": "1",
            "STNORESTART": "1"}


def _set(parent: ET.Element, tag: str, text: str) -> None:
    node = parent.find(tag)
    if node is None:
        node = ET.SubElement(parent, tag)
    node.text = text


def _configure(home: Path, *, me: str, peer: str, listen: str, peer_address: str,
               folder: Path, kind: str, send_kbps: int) -> None:
    path = home / "config.xml"
    tree = ET.parse(path)
    root = tree.getroot()
    for old in root.findall("device") + root.findall("folder"):
        root.remove(old)
    for device_id, address in ((me, "dynamic"), (peer, peer_address)):
        device = ET.SubElement(root, "device", id=device_id, name=device_id[:7],
                               compression="never", introducer="false")
        ET.SubElement(device, "address").text = address
    shared = ET.SubElement(root, "folder", id="bench", label="bench", path=str(folder), type=kind,
                           rescanIntervalS="3600", fsWatcherEnabled="false", ignorePerms="true")
    for device_id in (me, peer):
        ET.SubElement(shared, "device", id=device_id)
    gui = root.find("gui")
    assert gui is not None
    gui.set("enabled", "false")
    options = root.find("options")
    assert options is not None
    for tag, text in (("listenAddress", listen), ("globalAnnounceEnabled", "false"),
                      ("localAnnounceEnabled", "false"), ("relaysEnabled", "false"),
                      ("natEnabled", "false"), ("urAccepted", "-1"), ("startBrowser", "false"),
                      ("crashReportingEnabled", "false"), ("autoUpgradeIntervalH", "0"),
                      ("setLowPriority", "false"), ("maxSendKbps", str(send_kbps)),
                      ("limitBandwidthInLan", "true" if send_kbps else "false")):
        _set(options, tag, text)
    tree.write(path)


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU so far of a running process and its living descendants (Syncthing
    runs its work in a child of a monitor process, even with --no-restart)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return own + sum(tree_cpu_seconds(child) for child in children)


def run_syncthing(pictures: list[Path], folder: Path, *, hosts: tuple[str, str],
                  netns: tuple[str | None, str | None], pace_mbit: float) -> dict[str, Any]:
    """Sync ``pictures`` from a send-only to a receive-only Syncthing; figures as a dict.

    ``pace_mbit`` (loopback only, 0 for none) caps the sender with Syncthing's own limiter.
    """
    base = folder / "syncthing"
    homes = base / "home-a", base / "home-b"
    send, receive = base / "send", base / "receive"
    for path in (*homes, send / ".stfolder", receive / ".stfolder"):
        path.mkdir(parents=True)
    for picture in pictures:
        try:
            os.link(picture, send / picture.name)
        except OSError:
            shutil.copy2(picture, send / picture.name)
    ids = [_generate(home) for home in homes]
    ports = (PORT, PORT) if netns[0] else (PORT + 101, PORT + 102)
    kbps = int(pace_mbit * 1e6 / 8 / 1024)
    for index, (home, where, kind) in enumerate(((homes[0], send, "sendonly"),
                                                 (homes[1], receive, "receiveonly"))):
        other = 1 - index
        _configure(home, me=ids[index], peer=ids[other],
                   listen=f"tcp://{hosts[index]}:{ports[index]}",
                   peer_address=f"tcp://{hosts[other]}:{ports[other]}",
                   folder=where, kind=kind, send_kbps=kbps if index == 0 else 0)
    sizes = {p.name: p.stat().st_size for p in pictures}
    procs: list[subprocess.Popen[bytes]] = []
    logs = [base / "a.log", base / "b.log"]
    for home, space, log in zip(homes, netns, logs, strict=True):
        command = ["syncthing", "serve", f"--home={home}", "--no-browser", "--no-restart",
                   "--no-upgrade", f"--logfile={log}"]
        if space is not None:
            command = ["ip", "netns", "exec", space, *command]
        procs.append(subprocess.Popen(command, env=_env(home), stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
    started = time.time()
    visible: dict[str, float] = {}
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while len(visible) < len(sizes):
            if time.monotonic() > deadline:
                raise RuntimeError(f"Syncthing delivered {len(visible)} of {len(sizes)} files "
                                   f"in {TIMEOUT_S:g} s; see {logs}")
            for proc in procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"syncthing exited ({proc.returncode}); see {logs}")
            now = time.time()
            with os.scandir(receive) as entries:
                for entry in entries:
                    if entry.name in sizes and entry.name not in visible and \
                            entry.stat().st_size == sizes[entry.name]:
                        visible[entry.name] = now
            time.sleep(0.02)
        cpu = [tree_cpu_seconds(proc.pid) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    for picture in pictures:  # Syncthing's copy is the same bytes, or its figure means nothing
        got = hashlib.sha256((receive / picture.name).read_bytes()).hexdigest()
        assert got == hashlib.sha256(picture.read_bytes()).hexdigest(), picture.name
    total = sum(sizes.values())
    return {
        "syncthing_version": version(),
        "syncthing_first_visible_s": round(min(visible.values()) - started, 2),
        "syncthing_all_visible_s": round(max(visible.values()) - started, 2),
        "syncthing_cpu_s_sender": round(cpu[0], 2),
        "syncthing_cpu_s_receiver": round(cpu[1], 2),
        "syncthing_cpu_s_per_gb_sender": round(cpu[0] / (total / 1e9), 2),
        "syncthing_cpu_s_per_gb_receiver": round(cpu[1] / (total / 1e9), 2),
    }
