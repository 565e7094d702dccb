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

    python bench/field.py [--count 20] [--mbit 40] [--loopback] [--size 24mp|small]
"""

from __future__ import annotations

import argparse
import json
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
from tests.integration.devices import Side, bench_on_link  # noqa: E402
from tests.integration.nodes import NodeProcess, wait_until  # noqa: E402

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


def tcp_goodput_mbit(link: tuple[Side, Side], megabytes: int) -> float:
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


def event_times(node: NodeProcess, name: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for doc in node.events():
        if doc["event"] == name and "image_id" in doc:
            out.setdefault(doc["image_id"], doc["t"])
    return out


def listening_time(node: NodeProcess) -> float:
    return next(doc["t"] for doc in node.events() if doc["event"] == "Listening")


def run(args: argparse.Namespace, folder: Path, link: tuple[Side, Side] | None) -> dict[str, Any]:
    netns = link is not None
    tcp_mbit = tcp_goodput_mbit(link, 30) if link is not None else None
    pictures = cached_pictures(args.size, args.count + 1)
    initial, late = pictures[: args.count], pictures[args.count]
    a, b = make_mesh(folder, [DeviceSpec("a", Role.CAMERA, 8 * 1024**3),
                              DeviceSpec("b", Role.CAMERA, 8 * 1024**3)])
    with Card.open(a) as card:
        summary = import_paths(card, initial, now=time.time())
        ids = [item.image_id for item in summary.imported]
        thumb_bytes = sum(len(card.image(i).thumbnail) for i in ids)  # type: ignore[union-attr]
        sizes = {i: card.image(i).size for i in ids}  # type: ignore[union-attr]
    rate = args.mbit * 1e6 / 8  # bytes per second
    if link is not None:
        extra = [[f"--listen={side.address}:0", f"--interface={side.address}"] for side in link]
        spaces: tuple[str | None, str | None] = (link[0].netns, link[1].netns)
    else:
        extra = [["--listen=127.0.0.1:0", "--interface=127.0.0.1", f"--rate={int(rate)}"],
                 ["--listen=127.0.0.1:0", "--interface=127.0.0.1"]]
        spaces = (None, None)
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
        originals_floor = sum(sizes.values()) / rate
        midtransfer_ms = (thumbs[fresh] - captured[fresh]) * 1000
        in_flight = sum(1 for i in ids if originals[i] > thumbs[fresh])
        found = [d["t"] for d in receiver.events() if d["event"] == "PeerReady"]
        from_link = max(originals.values()) - min(found)
        ceiling = (min(found) - started) + originals_floor * FRAME / MSS
    finally:
        sender.stop()
        receiver.stop()
    return {
        "link": "tbf-shaped veth between two network namespaces, mDNS on it" if netns
        else "loopback, sender paced with --rate (not root: no namespaces), mDNS on loopback",
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
        "tcp_ceiling_mbit": round(args.mbit * MSS / FRAME, 2),
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--mbit", type=float, default=40.0)
    parser.add_argument("--size", choices=("24mp", "small"), default="24mp")
    parser.add_argument("--loopback", action="store_true", help="even as root")
    parser.add_argument("--keep", type=Path, help="keep cards and logs in this folder")
    args = parser.parse_args()
    result = bench_on_link(run, args, prefix="cammesh-field-", subnet="10.77.0")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
