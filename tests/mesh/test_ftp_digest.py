"""An upload's SHA-256, hashed in a thread beside the FTP loop (mesh/ftp_room.py ``Digest``).

The picture's id is this digest and the import trusts it without reading the file again,
so it must be the SHA-256 of exactly the bytes written, in their order, whatever the sizes
of the TLS records they came in and however far behind the hashing thread falls.
"""

from __future__ import annotations

import hashlib
import io
import random
import threading
from collections.abc import Iterator

import pytest

from mesh import ftp_room
from mesh.ftp_room import HASH_BLOCK, Digest, GuardedFile, Room, stop_hashing


@pytest.fixture(autouse=True)
def hashing_thread_ends() -> Iterator[None]:
    yield
    stop_hashing()
    assert not [t for t in threading.enumerate() if t.name.startswith("cammesh-ftp-hash")]


@pytest.mark.parametrize("sizes", [
    [], [0], [1], [16384] * 3, [HASH_BLOCK - 1, 1, HASH_BLOCK + 1],
    [random.Random(n).randrange(1, 70_000) for n in range(300)],
])
def test_the_digest_is_the_sha256_of_the_bytes_in_order(sizes: list[int]) -> None:
    rng = random.Random(len(sizes))
    blocks = [rng.randbytes(size) for size in sizes]
    digest = Digest()
    for block in blocks:
        digest.update(block)
    assert digest.hexdigest() == hashlib.sha256(b"".join(blocks)).hexdigest()
    assert digest.hexdigest() == hashlib.sha256(b"".join(blocks)).hexdigest()  # asked twice


def test_a_starved_hashing_thread_holds_a_bounded_backlog(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    gate = threading.Event()
    real = hashlib.sha256

    class Slow:
        def __init__(self) -> None:
            self._sha = real()

        def update(self, data: bytes) -> None:
            gate.wait(10)
            self._sha.update(data)

        def hexdigest(self) -> str:
            return self._sha.hexdigest()

    monkeypatch.setattr(ftp_room.hashlib, "sha256", Slow)
    digest = Digest()
    writer = threading.Thread(target=lambda: [digest.update(bytes(HASH_BLOCK))
                                              for _ in range(3 * ftp_room.HASH_BEHIND)])
    writer.start()
    writer.join(0.5)
    assert writer.is_alive()  # it waits for the hashing thread rather than hold it all
    assert len(digest._behind) <= ftp_room.HASH_BEHIND + 1
    gate.set()
    writer.join(10)
    assert digest.hexdigest() == real(bytes(3 * ftp_room.HASH_BEHIND * HASH_BLOCK)).hexdigest()


def test_a_whole_upload_through_its_guarded_file_is_hashed() -> None:
    room = Room(lambda: None)
    room.heard(1 << 30)
    out = io.BytesIO()
    upload = GuardedFile(out, room, "IMG_0001.JPG", hashed=True)
    data = random.Random(3).randbytes(3 * HASH_BLOCK + 12345)
    for at in range(0, len(data), 16384):
        upload.write(data[at : at + 16384])
    assert upload.sha256() == hashlib.sha256(data).hexdigest()
    assert out.getvalue() == data
    assert GuardedFile(io.BytesIO(), room, "resumed", hashed=False).sha256() is None
