"""The cost of per-picture keys (issue 7, "Must show" 4): sealing MB/s and its share of a transfer.

Run by hand (``.venv/bin/python bench/crypto.py [--mb 48]``); prints one JSON object:

- ``seal_mb_per_s`` / ``open_mb_per_s``: AES-256-GCM records (storage/sealing.py) over a
  24-megapixel-sized original, by this process's CPU time (the machine is shared), best of
  a few rounds; ``_wall`` figures too.
- ``wrap_per_s`` / ``unwrap_per_s``: X25519 + HKDF + ChaCha20-Poly1305 key wraps (one per
  picture and recipient, sent with the thumbnail).
- ``transfer_mb_per_s``: the same bytes as 128 KiB Chunk frames through a real pinned
  mutual-TLS 1.3 connection on loopback (mesh/tls.py), encoded and decoded by the codec.
- ``share_of_transfer``: sealing time / (sealing time + transfer time) for one original,
  i.e. how much longer sending it gets if the sender seals it just before it goes;
  ``open_share_of_transfer`` the same on the receiving side.
- ``card_*``: the path dispersal really takes on a real card (storage/card.py): the one
  pass that makes the key and the sealed digest before the first byte leaves
  (``card_sealed_form_s``), then every chunk read sealed on the fly
  (``card_read_sealed_mb_per_s``, against ``card_read_plain_mb_per_s``);
  ``dispersal_share_of_transfer`` is the extra time of both against the loopback transfer.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from pathlib import Path

import trio
from cryptography.hazmat.primitives.asymmetric import x25519

from mesh import tls
from mesh.desk_demo import DeviceSpec, make_mesh
from mesh.identity import Identity
from mesh.pairing import load_membership
from protocol.codec import FrameDecoder, encode
from protocol.messages import Chunk, Limits, Purpose, Role
from storage.sealing import Sealing

ROUNDS = 3


def _best(fn: object, rounds: int = ROUNDS) -> tuple[float, float]:
    """(best CPU seconds, best wall seconds) of ``fn()`` over ``rounds``."""
    cpu, wall = float("inf"), float("inf")
    for _ in range(rounds):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()  # type: ignore[operator]
        cpu = min(cpu, time.process_time() - c0)
        wall = min(wall, time.perf_counter() - w0)
    return cpu, wall


async def _loopback_transfer(folder: Path, payload: bytes) -> float:
    """Wall seconds to move ``payload`` as Chunk frames over pinned TLS on loopback."""
    sender_card, receiver_card = make_mesh(folder, [DeviceSpec("cam", Role.CAMERA),
                                                    DeviceSpec("desk", Role.DESK)])
    image_id = hashlib.sha256(payload).hexdigest()
    done = trio.Event()
    elapsed: list[float] = []

    async def receive(stream: tls.PeerStream) -> None:
        decoder, got = FrameDecoder(), 0
        while got < len(payload):
            data = await stream.receive_some(1 << 18)
            if not data:
                break
            decoder.feed(data)
            while (msg := decoder.next_message()) is not None:
                assert isinstance(msg, Chunk)
                got += len(msg.data)
        done.set()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(lambda task_status: tls.serve(
            Identity.load(receiver_card), load_membership(receiver_card), receive,
            host="127.0.0.1", port=0, task_status=task_status))
        port = tls.listening_port(listeners)
        stream = await tls.connect(Identity.load(sender_card), load_membership(sender_card),
                                   "127.0.0.1", port)
        start = time.perf_counter()
        view = memoryview(payload)
        for offset in range(0, len(payload), Limits.DEFAULT_CHUNK):
            await stream.send_all(encode(Chunk(image_id, Purpose.SYNC, offset,
                                               view[offset:offset + Limits.DEFAULT_CHUNK])))
        await done.wait()
        elapsed.append(time.perf_counter() - start)
        await stream.aclose()
        nursery.cancel_scope.cancel()
    return elapsed[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=24.0, help="size of the original in MB")
    args = parser.parse_args()
    size = int(args.mb * 1_000_000)
    original = (bytes(range(256)) * (size // 256 + 1))[:size]
    image_id = hashlib.sha256(original).hexdigest()
    owner = Sealing(x25519.X25519PrivateKey.generate())
    desk = Sealing(x25519.X25519PrivateKey.generate())
    key = owner.new_key()
    sealed = owner.seal(key, image_id, original)

    seal_cpu, seal_wall = _best(lambda: owner.seal(key, image_id, original))
    open_cpu, open_wall = _best(lambda: owner.open(key, image_id, sealed))
    wraps = 200
    wrap_cpu, _ = _best(lambda: [owner.wrap(key, image_id, desk.public_key) for _ in range(wraps)])
    wrapped = owner.wrap(key, image_id, desk.public_key)
    unwrap_cpu, _ = _best(lambda: [desk.unwrap(wrapped, image_id) for _ in range(wraps)])

    with tempfile.TemporaryDirectory() as folder:
        transfer = min(trio.run(_loopback_transfer, Path(folder) / f"r{i}", original)
                       for i in range(2))
        card_figures = _card_path(Path(folder) / "card", original)

    mb = size / 1e6
    print(json.dumps({
        "original_mb": mb,
        "cipher": "AES-256-GCM, 64 KiB records",
        "seal_mb_per_s": round(mb / seal_cpu, 1),
        "open_mb_per_s": round(mb / open_cpu, 1),
        "seal_mb_per_s_wall": round(mb / seal_wall, 1),
        "open_mb_per_s_wall": round(mb / open_wall, 1),
        "wrap_per_s": round(wraps / wrap_cpu),
        "unwrap_per_s": round(wraps / unwrap_cpu),
        "transfer_mb_per_s": round(mb / transfer, 1),
        "share_of_transfer": round(seal_wall / (seal_wall + transfer), 3),
        "open_share_of_transfer": round(open_wall / (open_wall + transfer), 3),
        "sealed_overhead": round(len(sealed) / size - 1, 5),
        **card_figures,
        "dispersal_share_of_transfer": round(
            card_figures["card_extra_s"] / (card_figures["card_extra_s"] + transfer), 3),
    }, indent=2))


def _card_path(folder: Path, original: bytes) -> dict[str, float]:
    """Seconds (wall, best of rounds) of the real card's sealed reads against plain ones."""
    from storage.card import Card

    step, mb = Limits.DEFAULT_CHUNK, len(original) / 1e6
    with Card.create(folder, device_id="b" * 64, name="bench",
                     capacity=4 * len(original) + 10**8) as card:
        image_id = card.add_local(original, name="BENCH.JPG", now=0.0).image_id
        c0 = time.perf_counter()
        form = card.sealed_form(image_id)
        form_s = time.perf_counter() - c0

        def plain() -> None:
            for offset in range(0, len(original), step):
                card.read_original(image_id, offset, step)

        def sealed() -> None:
            for offset in range(0, form.size, step):
                card.read_sealed(image_id, offset, step)

        _, plain_s = _best(plain)
        _, sealed_s = _best(sealed)
    return {
        "card_sealed_form_s": round(form_s, 4),
        "card_read_plain_mb_per_s": round(mb / plain_s, 1),
        "card_read_sealed_mb_per_s": round(mb / sealed_s, 1),
        "card_extra_s": round(form_s + sealed_s - plain_s, 4),
    }


if __name__ == "__main__":
    main()
