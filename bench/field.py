"""Two cameras syncing in the field: 20 pictures of 24 megapixels over a 40 Mbit/s link.

Prints one JSON object (issue 4, "Must show" 4).  As root, the two `cammesh node`
processes run in two network namespaces joined by a veth pair shaped with
``tc qdisc ... tbf`` and find each other by real mDNS on it; otherwise they run on
loopback with the sender pacing itself (``--rate``), and the output says so.

Times come from the nodes' structured logs (one clock, one machine):
- ``all_thumbnails_s`` / ``all_originals_s``: from both nodes started (the later
  ``Listening`` line; process start-up before it is reported apart) until the last of
  the 20 thumbnails / originals is at the peer;
- floors: bytes ÷ link rate (thumbnails: the thumbnail bytes; originals: every
  original sent, the mid-transfer one included);
- ``tcp_ceiling_mbit``: the most picture bytes any TCP stream can carry over the link,
  because tbf counts every frame's Ethernet, IP and TCP headers against the rate
  (66 bytes per 1,448-byte segment with timestamps, Linux's default): 95.6 % of it.
  ``originals_ceiling_s`` is the link-ready time plus the bytes at that ceiling, the
  least any protocol over TCP could take; ``originals_over_ceiling`` is ours against it.
- ``midtransfer_thumbnail_ms``: a 21st picture is imported through the running sender
  once a quarter of the originals are at the peer; from the sender's ``Captured`` line
  (on the card, handed to the node) to the peer's ``ThumbnailArrived``.

Modes on the user's path (issue 13), each timed from both processes started (Popen), as a
stopwatch would, and each printing its targets and whether each was met:
- ``--live``: both nodes start on empty cards, then ``cammesh import`` of the pictures
  through the running sender: ``live_first_thumbnail_s``, ``live_all_thumbnails_s``,
  ``live_all_originals_s``, and each process's CPU per GB of pictures (the importing
  ``cammesh import`` client counted with the sender);
- ``--burst``: the pictures on the sender's card and their originals flowing, then as many
  new ones written into its ``--watch`` folder at 10 per second; each one's delay from its
  file closed (the writer's own close) to its thumbnail at the peer (the receiver's log):
  ``burst_thumbnail_p50_ms`` / ``_p99_ms``, and ``burst_stages``, where the time goes: close
  to the watcher's ``Finished`` line, to the sender's ``Captured`` (the import), to the peer;
- ``--against syncthing`` (with any mode): then the same corpus over the same link with
  Syncthing (bench/against_syncthing.py), ``syncthing_all_visible_s`` and both sides' CPU
  per GB beside ours, as ratios; skipped with the reason where Syncthing is not installed.
``--mbit 0`` is an unshaped veth (loopback where not root, said in the output).
Every process runs with cammesh's bytecode compiled beforehand, as an installed package has it
(``bytecode`` in the output; ``--cold-bytecode`` compiles from source at each start instead,
as a session with PYTHONDONTWRITEBYTECODE=1 does: about 0.1 s more per process).

    python bench/field.py [--live|--burst] [--against syncthing] [--count 20] [--mbit 40]
                          [--loopback] [--size 24mp|small] [--watch-mode auto|notify|poll]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mesh.desk_demo import DeviceSpec, make_mesh  # noqa: E402
from protocol.messages import Role  # noqa: E402
from storage.card import Card  # noqa: E402
from storage.importer import import_paths  # noqa: E402
from storage.samples import write_sample_jpegs  # noqa: E402
from tests.integration.devices import LinkEnd, bench_on_link  # noqa: E402
from tests.integration.nodes import NodeProcess, wait_until  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from against_syncthing import run_syncthing, tree_cpu_seconds, why_no_syncthing  # noqa: E402
from startup import bytecode_env  # noqa: E402

CACHE = Path(tempfile.gettempdir()) / "cammesh-bench"
THUMBNAILS_TARGET_S = 1.5
ORIGINALS_SLACK = 0.05
MIDTRANSFER_TARGET_MS = 100.0


def cached_pictures(size: str, count: int, seed: int = 11) -> list[Path]:
    folder = CACHE / f"field-{size}-seed{seed}"
    done = folder / "complete"  # written last: an interrupted run's pictures are not reused
    if not (done.is_file() and int(done.read_text() or 0) >= count):
        write_sample_jpegs(folder, count, size=size, seed=seed)
        done.write_text(str(count))
    return sorted(folder.glob("IMG_*.JPG"))[:count]


RAW_RECEIVER = """
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); print("ready", flush=True)
c, _ = s.accept(); n = 0; t = None
while (d := c.recv(1 << 20)):
    t = t or time.monotonic(); n += len(d)
print(n * 8 / (time.monotonic() - t) / 1e6, flush=True)
"""
RAW_SENDER = """
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2]))); block = bytes(1 << 20)
for _ in range(int(sys.argv[3])): c.sendall(block)
c.close()
"""


MSS = 1448  # TCP payload of a 1500-byte IPv4 packet with the timestamps option
FRAME = MSS + 12 + 20 + 20 + 14  # + TCP options, TCP, IPv4 and Ethernet headers


def tcp_goodput_mbit(link: tuple[LinkEnd, LinkEnd], megabytes: int) -> float:
    """What one plain TCP stream carries over the shaped link: the real ceiling for originals
    (tbf counts Ethernet, IP and TCP headers against the rate, about 5% at full-size packets)."""
    receiver = subprocess.Popen(
        ["ip", "netns", "exec", link[1].netns, sys.executable, "-c", RAW_RECEIVER,
         link[1].address, "9911"],
        stdout=subprocess.PIPE, text=True)
    assert receiver.stdout is not None
    receiver.stdout.readline()
    subprocess.run(["ip", "netns", "exec", link[0].netns, sys.executable, "-c", RAW_SENDER,
                    link[1].address,
                    "9911", str(megabytes)], check=True, timeout=600)
    return float(receiver.communicate(timeout=60)[0])


def node_args(args: argparse.Namespace, link: tuple[LinkEnd, LinkEnd] | None
              ) -> tuple[list[list[str]], tuple[str | None, str | None]]:
    """Each node's address options and namespace; on loopback the sender paces itself."""
    if link is not None:
        extra = [[f"--listen={side.address}:0", f"--interface={side.address}"] for side in link]
        return extra, (link[0].netns, link[1].netns)
    pace = [f"--rate={int(args.mbit * 1e6 / 8)}"] if args.mbit else []
    return ([["--listen=127.0.0.1:0", "--interface=127.0.0.1", *pace],
             ["--listen=127.0.0.1:0", "--interface=127.0.0.1"]], (None, None))


def link_words(args: argparse.Namespace, link: tuple[LinkEnd, LinkEnd] | None) -> str:
    if link is not None:
        shape = f"tbf-shaped ({args.mbit:g} Mbit/s)" if args.mbit else "unshaped"
        return f"{shape} veth between two network namespaces, mDNS on it"
    pace = f"sender paced with --rate ({args.mbit:g} Mbit/s)" if args.mbit else "unpaced"
    return f"loopback, {pace} (not root: no namespaces), mDNS on loopback"


def cpu_seconds(process: NodeProcess | subprocess.Popen[Any] | int) -> float:
    """User + system CPU of a running process so far (``ip netns exec`` execs into it)."""
    if isinstance(process, NodeProcess):
        assert process.proc is not None
        process = process.proc
    return tree_cpu_seconds(process if isinstance(process, int) else process.pid)


def picture_id(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def event_times(node: NodeProcess, name: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for doc in node.events():
        if doc["event"] == name and "image_id" in doc:
            out.setdefault(doc["image_id"], doc["t"])
    return out


def listening_time(node: NodeProcess) -> float:
    return next(doc["t"] for doc in node.events() if doc["event"] == "Listening")


def run(args: argparse.Namespace, folder: Path, link: tuple[LinkEnd, LinkEnd] | None) -> dict[str, Any]:
    tcp_mbit = tcp_goodput_mbit(link, 30 if args.mbit else 300) if link is not None else None
    pictures = cached_pictures(args.size, args.count + 1)
    initial, late = pictures[: args.count], pictures[args.count]
    a, b = make_mesh(folder, [DeviceSpec("a", Role.CAMERA, 8 * 1024**3),
                              DeviceSpec("b", Role.CAMERA, 8 * 1024**3)])
    with Card.open(a) as card:
        summary = import_paths(card, initial, now=time.time())
        ids = [item.image_id for item in summary.imported]
        thumb_bytes = sum(len(card.image(i).thumbnail) for i in ids)  # type: ignore[union-attr]
        sizes = {i: card.image(i).size for i in ids}  # type: ignore[union-attr]
    rate = args.mbit * 1e6 / 8 or math.inf  # bytes per second
    extra, spaces = node_args(args, link)
    spawned = time.time()
    sender = NodeProcess(a, extra[0], netns=spaces[0]).start()
    receiver = NodeProcess(b, extra[1], netns=spaces[1]).start()
    try:
        sender.wait_ready()
        receiver.wait_ready()

        def originals_at_b() -> set[str]:
            return set(event_times(receiver, "OriginalArrived"))

        wait_until("a quarter of the originals at b",
                   lambda: len(originals_at_b() & set(ids)) >= max(1, args.count // 4),
                   timeout=600, every=0.2)
        answer = sender.ask({"op": "import", "paths": [str(late)]})
        (fresh,) = [i["image_id"] for i in answer["summary"]["imported"]]
        sizes[fresh] = late.stat().st_size
        wait_until("every original at b", lambda: originals_at_b() >= set(sizes),
                   timeout=1200, every=0.5)
        started = max(listening_time(sender), listening_time(receiver))
        thumbs = event_times(receiver, "ThumbnailArrived")
        originals = event_times(receiver, "OriginalArrived")
        captured = event_times(sender, "Captured")
        all_thumbnails = max(thumbs[i] for i in ids) - started
        all_originals = max(originals.values()) - started
        thumbnails_floor = thumb_bytes / rate
        originals_floor = sum(sizes.values()) / rate or math.nan  # unshaped: no floor
        midtransfer_ms = (thumbs[fresh] - captured[fresh]) * 1000
        in_flight = sum(1 for i in ids if originals[i] > thumbs[fresh])
        found = [d["t"] for d in receiver.events() if d["event"] == "PeerReady"]
        from_link = max(originals.values()) - min(found)
        ceiling = (min(found) - started) + originals_floor * FRAME / MSS
        cpu = cpu_seconds(sender), cpu_seconds(receiver)
    finally:
        sender.stop()
        receiver.stop()
    return {
        "link": link_words(args, link),
        "cpu_s_per_gb_sender": round(cpu[0] / (sum(sizes.values()) / 1e9), 2),
        "cpu_s_per_gb_receiver": round(cpu[1] / (sum(sizes.values()) / 1e9), 2),
        "link_mbit": args.mbit,
        "pictures": len(ids),
        "picture_bytes": sum(sizes[i] for i in ids),
        "process_start_to_listening_s": round(started - spawned, 3),
        "link_ready_s": round(min(found) - started, 3) if found else None,
        "all_thumbnails_s": round(all_thumbnails, 3),
        "thumbnails_floor_s": round(thumbnails_floor, 4),
        "all_originals_s": round(all_originals, 2),
        "originals_floor_s": round(originals_floor, 2),
        "originals_over_floor": round(all_originals / originals_floor - 1, 4),
        "originals_from_link_ready_s": round(from_link, 2),
        "link_tcp_goodput_mbit": round(tcp_mbit, 2) if tcp_mbit else None,
        "originals_goodput_mbit": round(sum(sizes.values()) * 8 / from_link / 1e6, 2),
        "tcp_ceiling_mbit": round(args.mbit * MSS / FRAME, 2) if args.mbit else None,
        "originals_ceiling_s": round(ceiling, 2),
        "originals_over_ceiling": round(all_originals / ceiling - 1, 4),
        "midtransfer_thumbnail_ms": round(midtransfer_ms, 1),
        "midtransfer_originals_still_coming": in_flight,
        "targets": {
            "all_thumbnails_s": THUMBNAILS_TARGET_S,
            "all_originals_over_floor": ORIGINALS_SLACK,
            "midtransfer_thumbnail_ms": MIDTRANSFER_TARGET_MS,
        },
        "met": {
            "all_thumbnails_s": all_thumbnails <= THUMBNAILS_TARGET_S,
            "all_originals_s": all_originals <= originals_floor * (1 + ORIGINALS_SLACK),
            "midtransfer_thumbnail_ms": midtransfer_ms <= MIDTRANSFER_TARGET_MS,
        },
        "logs": {"sender": str(sender.log), "receiver": str(receiver.log)},
    }


LIVE_THUMBNAILS_TARGET_S = 1.0
BURST_P99_TARGET_MS = 150.0


def run_live(args: argparse.Namespace, folder: Path, link: tuple[LinkEnd, LinkEnd] | None,
             ) -> dict[str, Any]:
    """Both nodes first, then `cammesh import` of the pictures through the running sender;
    every time from both processes started (the later Popen), as a stopwatch would."""
    pictures = cached_pictures(args.size, args.count)
    ids = {picture_id(p): p for p in pictures}
    total = sum(p.stat().st_size for p in pictures)
    a, b = make_mesh(folder, [DeviceSpec("a", Role.CAMERA, 8 * 1024**3),
                              DeviceSpec("b", Role.CAMERA, 8 * 1024**3)])
    extra, spaces = node_args(args, link)
    sender = NodeProcess(a, extra[0], netns=spaces[0]).start()
    receiver = NodeProcess(b, extra[1], netns=spaces[1]).start()
    spawned = time.time()
    importer_cpu = 0.0
    try:
        sender.wait_ready(every=0.005)  # a user types the command once the node is up
        importer = subprocess.Popen(
            [sys.executable, "-m", "mesh.cli", "import", str(a), *map(str, pictures)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        import_started = time.time()
        _, status, usage = os.wait4(importer.pid, 0)
        importer.returncode = os.waitstatus_to_exitcode(status)
        import_done = time.time()
        importer_cpu = usage.ru_utime + usage.ru_stime
        assert importer.returncode == 0, importer.stderr.read() if importer.stderr else ""
        wait_until("every original at b",
                   lambda: set(event_times(receiver, "OriginalArrived")) >= set(ids),
                   timeout=1200, every=0.2)
        thumbs = event_times(receiver, "ThumbnailArrived")
        originals = event_times(receiver, "OriginalArrived")
        ready = [d["t"] for d in receiver.events() if d["event"] == "PeerReady"]
        cpu = cpu_seconds(sender) + importer_cpu, cpu_seconds(receiver)
    finally:
        sender.stop()
        receiver.stop()
    first = min(thumbs[i] for i in ids) - spawned
    last_thumb = max(thumbs[i] for i in ids) - spawned
    last_original = max(originals[i] for i in ids) - spawned
    return {
        "mode": "live",
        "link": link_words(args, link),
        "link_mbit": args.mbit,
        "pictures": len(ids),
        "picture_bytes": total,
        "import_started_s": round(import_started - spawned, 3),
        "import_returned_s": round(import_done - spawned, 3),
        "link_ready_s": round(min(ready) - spawned, 3) if ready else None,
        "live_first_thumbnail_s": round(first, 3),
        "live_all_thumbnails_s": round(last_thumb, 3),
        "live_all_originals_s": round(last_original, 2),
        "originals_goodput_mbit": round(total * 8 / (last_original - first) / 1e6, 1),
        "cpu_s_sender": round(cpu[0], 2),
        "cpu_s_receiver": round(cpu[1], 2),
        "cpu_s_per_gb_sender": round(cpu[0] / (total / 1e9), 2),
        "cpu_s_per_gb_receiver": round(cpu[1] / (total / 1e9), 2),
        "targets": {"live_all_thumbnails_s": LIVE_THUMBNAILS_TARGET_S}
        if args.mbit else {},
        "met": {"live_all_thumbnails_s": last_thumb <= LIVE_THUMBNAILS_TARGET_S}
        if args.mbit else {},
        "logs": {"sender": str(sender.log), "receiver": str(receiver.log)},
    }


def run_burst(args: argparse.Namespace, folder: Path, link: tuple[LinkEnd, LinkEnd] | None,
              ) -> dict[str, Any]:
    """The pictures on the sender's card, its originals flowing; then ``--count`` new ones
    written into its ``--watch`` folder at 10 per second: each one's delay from its file
    being closed to its thumbnail at the peer."""
    pictures = cached_pictures(args.size, args.count)
    if not args.mbit:
        # Unshaped, the card's 20 originals are across in about a second: four times as many
        # keep originals in flight for the whole burst, as on a slow link.
        pictures += cached_pictures(args.size, BURST_BACKLOG * args.count, seed=13)
    fresh = cached_pictures(args.size, args.count, seed=12)
    contents = [p.read_bytes() for p in fresh]  # in memory: the write is the camera's, not a copy
    fresh_ids = [hashlib.sha256(data).hexdigest() for data in contents]
    a, b = make_mesh(folder, [DeviceSpec("a", Role.CAMERA, 8 * 1024**3),
                              DeviceSpec("b", Role.CAMERA, 8 * 1024**3)])
    with Card.open(a) as card:
        ids = [item.image_id for item in import_paths(card, pictures, now=time.time()).imported]
    watched = folder / "watched"
    watched.mkdir()
    extra, spaces = node_args(args, link)
    sender = NodeProcess(a, [*extra[0], f"--watch={watched}", f"--watch-mode={args.watch_mode}"],
                         netns=spaces[0]).start()
    receiver = NodeProcess(b, extra[1], netns=spaces[1]).start()
    closed: dict[str, float] = {}
    try:
        sender.wait_ready()
        receiver.wait_ready()
        wait_until("the first original at b", lambda: event_times(receiver, "OriginalArrived"),
                   timeout=600, every=0.05)
        start = time.monotonic()
        for index, (path, data, image_id) in enumerate(zip(fresh, contents, fresh_ids, strict=True)):
            delay = start + index / BURST_RATE - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            with (watched / path.name).open("wb") as f:
                f.write(data)
            closed[image_id] = time.time()
        wait_until("every burst thumbnail at b",
                   lambda: set(event_times(receiver, "ThumbnailArrived")) >= set(fresh_ids),
                   timeout=600, every=0.1)
        thumbs = event_times(receiver, "ThumbnailArrived")
        originals = event_times(receiver, "OriginalArrived")
        captured = event_times(sender, "Captured")
        by_path = {str((watched / p.name).resolve()): i
                   for p, i in zip(fresh, fresh_ids, strict=True)}
        finished: dict[str, float] = {}
        for doc in sender.events():
            if doc["event"] == "Finished":
                for path in doc["paths"]:
                    finished.setdefault(by_path.get(path, path), doc["t"])
        # Originals still to come at each close: the card's, and the burst's own before it.
        in_flight = min(
            sum(1 for i in [*ids, *(j for j in fresh_ids if closed[j] < t)]
                if originals.get(i, math.inf) > t)
            for t in closed.values())
    finally:
        sender.stop()
        receiver.stop()
    delays = sorted((thumbs[i] - closed[i]) * 1000 for i in fresh_ids)
    p50, p99 = percentile(delays, 0.50), percentile(delays, 0.99)

    def stage(start: dict[str, float], end: dict[str, float]) -> dict[str, float]:
        spans = sorted((end[i] - start[i]) * 1000 for i in fresh_ids)
        return {"p50": round(percentile(spans, 0.5), 1), "p99": round(percentile(spans, 0.99), 1)}

    # Where the delay goes: the close seen as finished (watch wake-up and the kernel asked),
    # the import (copy, hash, thumbnail, fsyncs, catalog; a file queued behind the one before
    # counts here), and the node to the peer's thumbnail (queueing behind originals, the link).
    stages = {"close_to_finished_ms": stage(closed, finished),
              "finished_to_captured_ms": stage(finished, captured),
              "captured_to_peer_thumbnail_ms": stage(captured, thumbs)}
    return {
        "mode": "burst",
        "link": link_words(args, link),
        "link_mbit": args.mbit,
        "burst_pictures": len(fresh_ids),
        "burst_per_s": BURST_RATE,
        "card_pictures_flowing": len(ids),
        "burst_thumbnail_p50_ms": round(p50, 1),
        "burst_thumbnail_p99_ms": round(p99, 1),
        "burst_thumbnail_max_ms": round(delays[-1], 1),
        "burst_stages": stages,
        "watch_mode": next((d["mode"] for d in sender.events() if d["event"] == "Watching"),
                           None),
        "originals_in_flight_at_every_close_min": in_flight,
        "targets": {"burst_thumbnail_p99_ms": BURST_P99_TARGET_MS},
        "met": {"burst_thumbnail_p99_ms": p99 <= BURST_P99_TARGET_MS},
        "logs": {"sender": str(sender.log), "receiver": str(receiver.log)},
    }


BURST_RATE = 10.0  # pictures per second
BURST_BACKLOG = 3  # unshaped: this many times --count more pictures on the card


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted ``values``."""
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def against_syncthing(args: argparse.Namespace, folder: Path, link: tuple[LinkEnd, LinkEnd] | None,
                      ours: dict[str, Any]) -> dict[str, Any]:
    """Syncthing on the same corpus and link, right after our run; its figures and the ratios."""
    why = why_no_syncthing()
    if why is not None:
        return {**ours, "syncthing_skipped": why}
    hosts = (link[0].address, link[1].address) if link else ("127.0.0.1", "127.0.0.1")
    spaces = (link[0].netns, link[1].netns) if link else (None, None)
    theirs = run_syncthing(cached_pictures(args.size, args.count), folder, hosts=hosts,
                           netns=spaces, pace_mbit=0.0 if link else args.mbit)
    out = {**ours, **theirs}
    mine = ours.get("live_all_originals_s", ours.get("all_originals_s"))
    key = "live_all_originals_s" if "live_all_originals_s" in ours else "all_originals_s"
    out["originals_over_syncthing"] = round(mine / theirs["syncthing_all_visible_s"], 3)
    for side in ("sender", "receiver"):
        out[f"cpu_per_gb_over_syncthing_{side}"] = round(
            ours[f"cpu_s_per_gb_{side}"] / max(theirs[f"syncthing_cpu_s_per_gb_{side}"], 1e-9), 3)
    out["targets"] = {**ours["targets"], f"{key}_over_syncthing": 1.0}
    out["met"] = {**ours["met"], f"{key}_over_syncthing": out["originals_over_syncthing"] <= 1.0}
    if not args.mbit:  # the fast link: no more CPU per byte than Syncthing, either side
        for side in ("sender", "receiver"):
            out["targets"][f"cpu_per_gb_over_syncthing_{side}"] = 1.0
            out["met"][f"cpu_per_gb_over_syncthing_{side}"] = (
                out[f"cpu_per_gb_over_syncthing_{side}"] <= 1.0)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--mbit", type=float, default=40.0, help="0: an unshaped veth")
    parser.add_argument("--size", choices=("24mp", "small"), default="24mp")
    parser.add_argument("--loopback", action="store_true", help="even as root")
    parser.add_argument("--keep", type=Path, help="keep cards and logs in this folder")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--live", action="store_true",
                      help="start both nodes, then `cammesh import` through the running sender")
    mode.add_argument("--burst", action="store_true",
                      help="pictures written into the sender's --watch folder, originals flowing")
    parser.add_argument("--watch-mode", choices=("auto", "notify", "poll"), default="auto",
                        help="with --burst: the sender's --watch-mode (poll: the old way, to compare)")
    parser.add_argument("--against", choices=("syncthing",),
                        help="then the same corpus over the same link with Syncthing")
    parser.add_argument("--cold-bytecode", action="store_true",
                        help="cammesh compiled from source at every process start (no .pyc)")
    args = parser.parse_args()
    bytecode = bytecode_env(args.cold_bytecode)
    bench = run_live if args.live else run_burst if args.burst else run

    def measured(args: argparse.Namespace, folder: Path,
                 link: tuple[LinkEnd, LinkEnd] | None) -> dict[str, Any]:
        ours = bench(args, folder, link)
        if args.against == "syncthing":
            ours = against_syncthing(args, folder, link, ours)
        return ours

    result = bench_on_link(measured, args, prefix="cammesh-field-", subnet="10.77.0")
    result["bytecode"] = bytecode
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
