"""Fuzzing a live node's socket after a real paired TLS handshake (issue 7, "Must show" 3).

The frame decoder's own fuzz is tests/protocol/test_codec_fuzz.py; this one goes through the
whole node: TLS, the runtime's pumps, the connection state machine and the node logic, on a
real `cammesh node` process.  A paired identity connects, (usually) handshakes, and sends a
batch of inputs -- random bytes, truncated, mutated and oversized frames, and well-formed
messages with random values -- each followed by a Ping, so the Pongs that come back tell how
many inputs the node processed before it cut the link off (an input that breaks the protocol
ends the connection; the batch's rest is never read, and is not counted).

Checked: the node logs only protocol violations (no unexpected error, no traceback), keeps
serving an honest peer all along, and its card does not change (its pictures, the originals'
hashes, what it holds and its dispersion list; used bytes equal the bytes on disk).

Inputs: a few hundred in the ci profile, at least 100,000 in the long profile
(CAMMESH_PROFILE=long); the seed is printed so a failure can be replayed.
"""

from __future__ import annotations

import os
import random
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from mesh.desk_demo import DeviceSpec
from protocol.codec import encode
from protocol.messages import (
    Catalog,
    Collect,
    DisperseAccept,
    DisperseReject,
    Limits,
    Message,
    Ping,
    Pong,
    Purpose,
    ReadOut,
    RefuseOriginal,
    Release,
    RequestOriginal,
    Role,
    Stored,
    TransferFailed,
)
from tests.conftest import long_profile
from tests.integration.devices import ProcessMesh
from tests.integration.hostile_peer import PeerClosed, ScriptedPeer, card_state
from tests.integration.nodes import wait_until, write_pictures

pytestmark = pytest.mark.integration

INPUTS = 100_000 if long_profile() else 300
BATCH = 64  # inputs per connection at most; a protocol error ends a batch early
MARK = 1 << 40  # Ping nonces from here on tell inputs apart from the node's own pings


def _id(rng: random.Random) -> str:
    return rng.randbytes(32).hex()


def _purpose(rng: random.Random) -> Purpose:
    return rng.choice(list(Purpose))


# Well-formed messages a paired peer may send at any time once running; with random ids they
# touch no picture (answers are TransferFailed, Release or nothing).
VALID: list[Callable[[random.Random], Message]] = [
    lambda r: Ping(r.randrange(MARK)),
    lambda r: Pong(r.randrange(2**63)),
    lambda r: RequestOriginal(_id(r), r.random() < 0.5, r.randrange(1 << 20)),
    lambda r: RequestOriginal(_id(r), True, 0, max_side=r.randrange(16, 4000), quality=r.randrange(1, 101)),
    lambda r: RefuseOriginal(_id(r)),
    lambda r: Release(_id(r)),
    lambda r: Collect(_id(r), r.randrange(1 << 20)),
    lambda r: ReadOut(_id(r), r.randrange(1 << 20)),
    lambda r: TransferFailed(_id(r), _purpose(r), "x" * r.randrange(100)),
    lambda r: DisperseAccept(_id(r), r.randrange(1 << 30), 0),
    lambda r: DisperseReject(_id(r), "no", r.randrange(1 << 30)),
    lambda r: Stored(*(2 * [_id(r)])),
]

# Seeds for mutation: every message type's frame shape, harmless or not.
SEEDS: list[Callable[[random.Random], Message]] = [
    *VALID,
    lambda r: Catalog({_id(r): r.randrange(100) for _ in range(r.randrange(4))}),
]


def _mutate(rng: random.Random, frame: bytes) -> bytes:
    data = bytearray(frame)
    for _ in range(rng.randrange(1, 5)):
        where = rng.randrange(len(data))
        action = rng.randrange(4)
        if action == 0:
            data[where] ^= 1 << rng.randrange(8)
        elif action == 1:
            data[where] = rng.randrange(256)
        elif action == 2:
            data[where:where] = rng.randbytes(rng.randrange(1, 9))
        else:
            del data[where:where + rng.randrange(1, 9)]
    if rng.random() < 0.7 and len(data) >= 4:  # keep the prefix honest, so the body is parsed
        data[:4] = struct.pack(">I", len(data) - 4)
    return bytes(data)


def fuzz_input(rng: random.Random) -> tuple[str, bytes]:
    """One input: (its kind, its bytes)."""
    roll = rng.random()
    if roll < 0.80:
        return "valid", encode(rng.choice(VALID)(rng))
    frame = encode(rng.choice(SEEDS)(rng))
    if roll < 0.92:
        return "mutated", _mutate(rng, frame)
    if roll < 0.95:
        return "truncated", frame[: rng.randrange(1, len(frame))]
    if roll < 0.98:
        body = rng.randbytes(rng.randrange(0, 300))
        return "random", struct.pack(">I", len(body)) + body if rng.random() < 0.5 else body
    return "oversized", struct.pack(">I", rng.randrange(Limits.MAX_FRAME + 1, 2**32))


@dataclass
class Tally:
    processed: int = 0
    connections: int = 0
    cut_off: int = 0
    kinds: dict[str, int] = field(default_factory=dict)


def shortfall(stream: bytes) -> int:
    """Bytes the last frame of ``stream`` still lacks, by the length prefixes alone (0 when the
    stream ends on a frame boundary or at a prefix the node refuses outright)."""
    at = 0
    while at < len(stream):
        if len(stream) - at < 4:
            return 4 - (len(stream) - at)
        (length,) = struct.unpack_from(">I", stream, at)
        if length > Limits.MAX_FRAME:
            return 0
        at += 4 + length
    return at - len(stream)


async def open_link(card: Path, port: int) -> ScriptedPeer:
    """A fresh connection the node has taken on: its Hello arrived.  Until the node has let go
    of our previous connection it may refuse the new one (one link per pair); then retry."""
    while True:
        peer = await ScriptedPeer.connect(card, port)
        try:
            await peer.receive()
            return peer
        except PeerClosed:
            await peer.aclose()
            await trio.sleep(0.05)


async def run_batch(card: Path, port: int, rng: random.Random, tally: Tally) -> None:
    """One connection: runs of well-formed inputs go pipelined; each fuzzed input goes alone,
    once the node has answered everything before it, so that it is not hidden by the frames
    around it (the decoder refuses a bad length prefix as soon as it is fed, together with
    the frames before it in the same read)."""
    peer = await open_link(card, port)
    tally.connections += 1
    try:
        if rng.random() < 0.9:
            await peer.handshake()
        inputs = [fuzz_input(rng) for _ in range(rng.randrange(1, BATCH + 1))]
        sent = b""
        answered = 0  # inputs whose Ping came back
        start = 0
        with trio.move_on_after(120) as stalled:
            try:
                while start < len(inputs):
                    # A run of well-formed inputs, or one fuzzed input on its own.
                    end = start
                    while end < len(inputs) and inputs[end][0] == "valid":
                        end += 1
                    end = max(end, start + 1)
                    group = b"".join(data + encode(Ping(MARK + i))
                                     for i, (_, data) in enumerate(inputs[start:end], start))
                    # Complete a frame left open (garbage, so the node cuts the link there)
                    # rather than leave the node waiting for bytes that never come.
                    group += bytes(shortfall(sent + group))
                    sent += group
                    await peer.send_raw(group)
                    while answered < end:
                        msg = await peer.receive()
                        if isinstance(msg, Pong) and msg.nonce >= MARK:
                            answered = msg.nonce - MARK + 1
                    start = end
            except PeerClosed:
                tally.cut_off += 1
        if stalled.cancelled_caught:
            waiting = inputs[answered] if answered < len(inputs) else None
            raise AssertionError(
                f"the node neither answered nor closed for 120 s after input {answered} of "
                f"{len(inputs)}: {waiting}; it hangs on what a paired peer sent"
            )
        # The input after the last one answered is the one the node cut the link off for.
        done = min(len(inputs), answered + (1 if peer.closed else 0))
        tally.processed += done
        for kind, _ in inputs[:done]:
            tally.kinds[kind] = tally.kinds.get(kind, 0) + 1
    finally:
        await peer.aclose()


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[tuple[ProcessMesh, Path]]:
    made = ProcessMesh.create(tmp_path, [DeviceSpec("victim", Role.CAMERA, 50_000_000),
                                  DeviceSpec("honest", Role.CAMERA, 50_000_000),
                                  DeviceSpec("fuzzer", Role.DESK)])
    fuzzer = made.devices.pop("fuzzer")
    try:
        made.start_all()
        made.wait_connected()
        yield made, fuzzer.card
    finally:
        made.stop_all()


@pytest.mark.timeout(7200 if long_profile() else 300)
async def test_a_live_node_survives_fuzzed_frames(mesh: tuple[ProcessMesh, Path], tmp_path: Path) -> None:
    the_mesh, fuzzer = mesh
    victim, honest = the_mesh["victim"], the_mesh["honest"]
    seed = int.from_bytes(os.urandom(4)) if long_profile() else 2026
    print(f"live fuzz seed {seed}, {INPUTS} inputs")
    rng = random.Random(seed)
    made = 0

    def honest_syncs() -> None:
        nonlocal made
        files = write_pictures(tmp_path / f"p{made}", 1, side=300, seed=made)
        made += 1
        answer = victim.running.ask({"op": "import", "paths": [str(f) for f in files]})
        (item,) = answer["summary"]["imported"]
        wait_until("the honest peer to sync the new picture", lambda: (
            honest.running.images().get(item["image_id"], {}).get("where") == "local"))

    await trio.to_thread.run_sync(honest_syncs)
    before = await trio.to_thread.run_sync(card_state, victim)
    tally = Tally()
    checkpoints = 4
    for step in range(checkpoints):
        while tally.processed < INPUTS * (step + 1) // checkpoints:
            await run_batch(fuzzer, victim.port, rng, tally)
        await trio.to_thread.run_sync(honest_syncs)  # served through the fuzz, every quarter
        print(f"live fuzz: {tally.processed} inputs on {tally.connections} connections", flush=True)

    after = await trio.to_thread.run_sync(card_state, victim)
    ours = after.pictures - before.pictures
    assert len(ours) == checkpoints and all(where == "local" for _, where in ours), ours
    assert not before.pictures - after.pictures
    assert after.held == before.held and after.dispersion == before.dispersion
    assert victim.running.proc is not None and victim.running.proc.poll() is None

    log = victim.running.log.read_text(errors="replace")
    assert "Traceback" not in log and "unexpected error" not in log, log[-3000:]
    violations = [e for e in victim.running.events() if e["event"] == "ProtocolViolation"]
    assert len(violations) >= tally.cut_off  # every cut-off has its reason in the log
    print(f"live fuzz: {tally.processed} inputs on {tally.connections} connections, "
          f"{tally.cut_off} cut off; by kind {tally.kinds}")
    assert tally.processed >= INPUTS
    assert tally.kinds.get("valid", 0) > 0 and tally.cut_off > 0
