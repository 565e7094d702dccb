"""Movies between real `cammesh node` processes (issue 18, Must-show 2): real TLS, real SIGKILL.

The movies are made here with PyAV: a real short H.264 clip, padded to size with a `free`
box after its index (the ISO format's own filler, which every reader skips), so a 1 GB movie
costs a second of disk writes instead of minutes of encoding, and its strip and byte offsets
are those of the real clip.  Orderings are read from each node's structured log.
"""

from __future__ import annotations

import hashlib
import signal
import struct
import time
from pathlib import Path

import pytest

from mesh.desk_demo import DeviceSpec, make_mesh
from protocol.messages import Limits, Role
from storage.card import Card
from storage.importer import import_paths
from storage.samples import write_sample_jpegs
from tests.integration.nodes import NodeProcess, first_index, ids_where, wait_until

pytestmark = pytest.mark.integration
pytest.importorskip("av", reason="PyAV is not installed (pip install 'cammesh[media]')")

from storage.movie_samples import write_movie  # noqa: E402

BLOCK = 64 * 1024 * 1024


def padded_movie(path: Path, size: int, *, seed: int = 1) -> Path:
    """A real 12 s clip with a cut, followed by a `free` box that brings it to ``size`` bytes."""
    write_movie(path, seconds=12, size=(320, 180), cuts=(5.0,), noise=seed)
    pad = size - path.stat().st_size
    assert 8 <= pad < 2**32
    block = bytes(BLOCK)
    with path.open("ab") as out:
        out.write(struct.pack(">I4s", pad, b"free"))
        left = pad - 8
        while left:
            n = min(left, BLOCK)
            out.write(block[:n])
            left -= n
    return path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(BLOCK):
            digest.update(chunk)
    return digest.hexdigest()


def start(nodes: list[NodeProcess], card: Path, *extra: str) -> NodeProcess:
    node = NodeProcess(card, ["--listen", "127.0.0.1:0", "--interface", "127.0.0.1", *extra])
    node.start()
    node.wait_ready()
    if node not in nodes:
        nodes.append(node)
    return node


def import_into(card: Path, files: list[Path]) -> list[str]:
    with Card.open(card) as opened:
        summary = import_paths(opened, files, now=1_700_000_000.0)
    return [item.image_id for item in summary.imported]


def cards(tmp_path: Path) -> list[Path]:
    return make_mesh(tmp_path, [DeviceSpec("cam", Role.CAMERA), DeviceSpec("desk", Role.DESK)])


def test_a_movie_s_whole_strip_is_at_the_peer_before_its_first_chunk(
    tmp_path: Path, nodes: list[NodeProcess]
) -> None:
    cam, desk = cards(tmp_path)
    (movie,) = import_into(cam, [padded_movie(tmp_path / "C0001.MP4", 8 * 1024 * 1024)])
    with Card.open(cam) as card:
        strip = card.strip(movie)
    assert len(strip) >= 3  # interval frames and the cut
    start(nodes, cam)
    receiver = start(nodes, desk)
    wait_until("the movie at the desk", lambda: movie in ids_where(receiver, "local"))
    events = receiver.events()
    arrived = first_index(events, "StripArrived", movie)
    first_chunk = first_index(events, "TransferStarted", movie)
    assert arrived is not None and first_chunk is not None
    assert arrived < first_chunk, "the movie's first chunk came before its strip"
    assert events[arrived]["frames"] == len(strip)
    receiver.stop()
    with Card.open(desk) as card:  # the desk's card keeps the whole strip, as the camera made it
        assert card.strip(movie) == strip


def test_a_still_captured_during_a_1_gb_movie_overtakes_it(
    tmp_path: Path, nodes: list[NodeProcess]
) -> None:
    cam, desk = cards(tmp_path)
    source = padded_movie(tmp_path / "C0002.MP4", 1024**3)
    (movie,) = import_into(cam, [source])
    sender = start(nodes, cam)
    receiver = start(nodes, desk)

    def movie_under_way() -> int:
        for item in receiver.ask({"op": "status"})["incoming"]:
            if item["image_id"] == movie and item["done"] > 64 * Limits.DEFAULT_CHUNK:
                return int(item["done"])
        return 0

    wait_until("the movie to be under way", movie_under_way, every=0.02)
    still = write_sample_jpegs(tmp_path / "still", 1, seed=11)[0]
    asked = time.time()
    answer = sender.ask({"op": "import", "paths": [str(still)]})
    (fresh,) = [item["image_id"] for item in answer["summary"]["imported"]]
    wait_until("the still's thumbnail at the desk",
               lambda: first_index(receiver.events(), "ThumbnailArrived", fresh) is not None,
               every=0.02)
    events = receiver.events()
    thumb = first_index(events, "ThumbnailArrived", fresh)
    assert thumb is not None
    at = events[thumb]["t"]
    under_way = [i["done"] for i in receiver.ask({"op": "status"})["incoming"]
                 if i["image_id"] == movie]
    assert under_way and under_way[0] < source.stat().st_size, "the movie was not still arriving"
    assert first_index(events, "OriginalArrived", movie) is None
    print(f"still's thumbnail at the desk {at - asked:.3f} s after its import was asked for, "
          f"with the movie at {under_way[0] / 1e6:.0f} MB of {source.stat().st_size / 1e6:.0f}")


def test_a_movie_cut_off_by_sigkill_resumes_from_its_offset_and_ends_hash_identical(
    tmp_path: Path, nodes: list[NodeProcess]
) -> None:
    cam, desk = cards(tmp_path)
    source = padded_movie(tmp_path / "C0003.MP4", 40 * 1024 * 1024)
    (movie,) = import_into(cam, [source])
    assert movie == sha256(source)
    sender = start(nodes, cam, "--rate", "8000000")  # about 5 s for the movie
    receiver = start(nodes, desk)

    def done() -> int:
        for item in receiver.ask({"op": "status"})["incoming"]:
            if item["image_id"] == movie:
                return int(item["done"])
        return 0

    cut_at = wait_until("a quarter of the movie at the desk",
                        lambda: (n := done()) > source.stat().st_size // 4 and n, every=0.05)
    sender.kill(signal.SIGKILL)
    assert movie not in ids_where(receiver, "local")
    start(nodes, cam, "--rate", "8000000")
    wait_until("the movie at the desk", lambda: movie in ids_where(receiver, "local"))
    starts = [e for e in receiver.events() if e["event"] == "TransferStarted"
              and e.get("image_id") == movie]
    assert len(starts) == 2
    resumed_from = starts[1]["done"] - Limits.DEFAULT_CHUNK
    print(f"cut at {cut_at} bytes, resumed from {resumed_from}")
    assert resumed_from >= source.stat().st_size // 8, "the movie started again from nothing"
    receiver.stop()
    with Card.open(desk) as card:
        record = card.image(movie)
        assert record is not None and record.size == source.stat().st_size
        digest = hashlib.sha256()
        offset = 0
        while offset < record.size:
            data = card.read_original(movie, offset, BLOCK)
            digest.update(data)
            offset += len(data)
    assert digest.hexdigest() == sha256(source) == movie
