"""Mesh membership and pairing with a code distributed in advance (the patent's "ID and password").

A mesh is created on one device (``create_mesh``), which then runs a pairing window
(``serve_pairing``) for a while; other devices join with the short code
(``join_mesh``). The code never travels: both sides run SPAKE2 on it, so a captured or
man-in-the-middled exchange allows no offline guessing, and each connection allows one
online guess — the window closes after ``max_failures`` wrong codes. Everything after
SPAKE2 (certificates, names, roles, the mesh id, the members already paired) travels
sealed with ChaCha20-Poly1305 under keys derived from the SPAKE2 key and the transcript,
so a man in the middle who swaps certificates fails decryption: key confirmation.

What a card belongs to once paired -- the mesh id and the pinned peers -- is
mesh/membership.py's.  Only ``mesh_hash`` -- never the id or the code -- appears in discovery.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import trio
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mesh.errors import NotPaired, PairingClosed, PairingError, WrongCode
from mesh.identity import Identity
from mesh.membership import (
    MAX_MEMBERS,
    Membership,
    PinnedPeer,
    learn_members,
    load_membership,
    save_membership,
)
from mesh.membership import create_mesh as create_mesh  # re-exported: a mesh is made, then paired
from mesh.membership import membership_path as membership_path
from protocol.messages import Role

log = logging.getLogger("cammesh.pairing")

PAIRING_VERSION = 1
PAIRING_TIMEOUT = 30.0  # one join attempt, end to end
MAX_PAIRING_FRAME = 512 * 1024

# Codes are typed by people on camera keypads: no 0/o, 1/l/i, 2/z, 5/s confusion.
CODE_ALPHABET = "346789abcdefghjkmnpqrtuvwxy"
CODE_LENGTH = 8  # ~38 bits: far beyond the handful of online guesses a window allows


# --- codes ------------------------------------------------------------------------


def new_pairing_code() -> str:
    """A fresh short code to show on the creating device, e.g. ``k7qm-2xpa``."""
    text = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    return f"{text[:4]}-{text[4:]}"


def normalise_code(code: str) -> bytes:
    """What SPAKE2 runs on: the code without spaces, dashes or case, so typing slips don't matter."""
    text = "".join(ch for ch in code.lower() if ch.isalnum())
    if len(text) < 6:
        raise PairingError("the pairing code is too short: type the code the other device shows")
    return text.encode("utf-8")


# --- the pairing exchange ---------------------------------------------------------
#
# joiner (SPAKE2 side A)                     admitting device (side B)
#   {t: join, spake: A}            ->
#                                  <-        {t: spake, spake: B}
#   {t: sealed, box: seal_j(me)}   ->        opens it, or answers {t: wrong-code}
#                                  <-        {t: sealed, box: seal_a(it, mesh id, members, you)}
#   {t: sealed, box: seal_j(ack)}  ->        pins the joiner only now
#
# seal_j/seal_a: ChaCha20-Poly1305, one key per direction from HKDF(SPAKE2 key,
# transcript of both SPAKE2 messages); opening a box is the key confirmation.

_ID_JOINER = b"cammesh joiner"
_ID_ADMITTER = b"cammesh admitter"


@dataclass(frozen=True, slots=True)
class PairingAttempt:
    """One join attempt as the admitting device saw it (for the command line and logs)."""

    address: str
    outcome: str  # "joined" | "wrong-code" | "failed"
    detail: str
    peer: PinnedPeer | None = None


class _Channel:
    """Length-prefixed msgpack frames over a TCP stream, each bounded in size."""

    def __init__(self, stream: trio.abc.Stream, address: str) -> None:
        self.stream = stream
        self.address = address
        self._buf = bytearray()

    async def send(self, **frame: Any) -> None:
        body = msgpack.packb({"v": PAIRING_VERSION, **frame}, use_bin_type=True)
        await self.stream.send_all(struct.pack(">I", len(body)) + body)

    async def receive(self) -> dict[str, Any]:
        while True:
            if len(self._buf) >= 4:
                (length,) = struct.unpack(">I", self._buf[:4])
                if length > MAX_PAIRING_FRAME:
                    raise PairingError(f"{self.address} sent an oversized pairing frame")
                if len(self._buf) >= 4 + length:
                    body = bytes(self._buf[4 : 4 + length])
                    del self._buf[: 4 + length]
                    break
            data = await self.stream.receive_some(65536)
            if not data:
                raise PairingError(f"{self.address} closed the pairing connection")
            self._buf += data
        try:
            frame = msgpack.unpackb(body, raw=False)
        except (ValueError, msgpack.UnpackException) as exc:
            raise PairingError(f"{self.address} sent a malformed pairing frame") from exc
        if not isinstance(frame, dict) or frame.get("v") != PAIRING_VERSION:
            raise PairingError(f"{self.address} speaks another pairing version; update cammesh")
        return frame


class _Seal:
    """Direction-bound AEAD boxes keyed from the SPAKE2 key and the transcript."""

    def __init__(self, key: bytes, transcript: bytes, *, joiner: bool) -> None:
        okm = HKDF(
            algorithm=hashes.SHA256(), length=64, salt=None, info=b"cammesh pairing v1" + transcript
        ).derive(key)
        j, a = ChaCha20Poly1305(okm[:32]), ChaCha20Poly1305(okm[32:])
        self._out, self._in = (j, a) if joiner else (a, j)
        self._aad = transcript
        self._sent = self._received = 0

    def seal(self, payload: dict[str, Any]) -> bytes:
        nonce = self._sent.to_bytes(12, "big")
        self._sent += 1
        return self._out.encrypt(nonce, msgpack.packb(payload, use_bin_type=True), self._aad)

    def open(self, box: object) -> dict[str, Any]:
        """Raise ``InvalidTag`` when the box was not sealed under the same code."""
        if not isinstance(box, bytes):
            raise InvalidTag()
        nonce = self._received.to_bytes(12, "big")
        self._received += 1
        payload = msgpack.unpackb(self._in.decrypt(nonce, box, self._aad), raw=False)
        if not isinstance(payload, dict):
            raise InvalidTag()
        return payload


def _expect(frame: dict[str, Any], kind: str, address: str) -> dict[str, Any]:
    if frame.get("t") == "wrong-code":
        left = frame.get("left")
        raise WrongCode(
            f"the device at {address} refused the pairing code: check the code it shows "
            f"and type it again ({left} attempt(s) left before its pairing window closes)"
        )
    if frame.get("t") == "error":
        raise PairingError(f"the device at {address} stopped pairing: {frame.get('reason')}")
    if frame.get("t") != kind:
        raise PairingError(f"{address} sent an unexpected pairing frame {frame.get('t')!r}")
    return frame


def _self_pin(identity: Identity, role: Role) -> dict[str, Any]:
    return {"name": identity.name, "role": Role(role).value, "cert": identity.cert_der}


async def join_mesh(
    identity: Identity,
    card: Path,
    code: str,
    *,
    role: Role,
    host: str,
    port: int,
    timeout: float = PAIRING_TIMEOUT,
) -> Membership:
    """Join the mesh of the device pairing at ``host:port``; pin it and the members it knows.

    Raises ``WrongCode`` when the codes differ, ``PairingError`` for anything else.
    """
    password = normalise_code(code)
    try:
        existing: Membership | None = await trio.to_thread.run_sync(load_membership, card)
    except NotPaired:
        existing = None
    address = f"{host}:{port}"
    try:
        with trio.fail_after(timeout):
            try:
                stream = await trio.open_tcp_stream(host, port)
            except OSError as exc:
                raise PairingError(f"cannot reach a pairing device at {address}: {exc}") from exc
            async with stream:
                return await _join(identity, card, password, role, existing, _Channel(stream, address))
    except trio.TooSlowError as exc:
        raise PairingError(f"pairing with {address} did not finish within {timeout:g} s") from exc
    except trio.BrokenResourceError as exc:
        raise PairingError(f"the pairing connection to {address} broke") from exc


async def _join(
    identity: Identity,
    card: Path,
    password: bytes,
    role: Role,
    existing: Membership | None,
    channel: _Channel,
) -> Membership:
    from spake2 import SPAKE2_A, SPAKEError  # builds its group tables: only when pairing

    address = channel.address
    spake = SPAKE2_A(password, idA=_ID_JOINER, idB=_ID_ADMITTER)
    ours = spake.start()
    await channel.send(t="join", spake=ours)
    theirs = _expect(await channel.receive(), "spake", address).get("spake")
    try:
        if not isinstance(theirs, bytes):
            raise TypeError("not bytes")
        key = spake.finish(theirs)
    except (SPAKEError, TypeError, ValueError) as exc:
        raise PairingError(f"{address} sent a malformed SPAKE2 message") from exc
    seal = _Seal(key, ours + theirs, joiner=True)
    await channel.send(t="sealed", box=seal.seal(_self_pin(identity, role)))
    reply = _expect(await channel.receive(), "sealed", address)
    try:
        payload = seal.open(reply.get("box"))
    except (InvalidTag, ValueError) as exc:
        raise PairingError(
            f"the answer from {address} did not authenticate although it accepted our code: "
            "someone may be interfering with the network; pair again on a trusted network"
        ) from exc
    if payload.get("you") != identity.device_id:
        raise PairingError(f"{address} pinned a certificate other than ours: pairing aborted")
    admitter = PinnedPeer.from_wire(payload.get("me"))
    members = [PinnedPeer.from_wire(m) for m in payload.get("members", [])[:MAX_MEMBERS]]
    mesh_id = payload.get("mesh_id")
    if not isinstance(mesh_id, str) or len(mesh_id) != 32:
        raise PairingError(f"{address} sent a malformed mesh id")
    if existing is not None and existing.mesh_id != mesh_id:
        raise PairingError(
            f"{card} already belongs to another mesh; it cannot join a second one "
            "(delete its mesh/peers.json to leave the old mesh)"
        )
    base = existing if existing is not None else Membership(mesh_id)
    membership = base.with_peers([admitter, *members], me=identity.device_id)
    await channel.send(t="sealed", box=seal.seal({"ack": True}))
    await trio.to_thread.run_sync(save_membership, card, membership)
    log.info("joined mesh through %s (%s) at %s", admitter.name, admitter.short_id, address)
    return membership


async def serve_pairing(
    identity: Identity,
    card: Path,
    code: str,
    *,
    role: Role,
    host: str | None,
    port: int,
    window: float = 300.0,
    max_failures: int = 3,
    max_joins: int | None = None,
    attempt_timeout: float = PAIRING_TIMEOUT,
    on_attempt: Callable[[PairingAttempt], object] | None = None,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> list[PinnedPeer]:
    """Admit devices that know ``code`` for ``window`` seconds (or until ``max_joins``).

    Attempts run one at a time, each bounded by ``attempt_timeout``. Returns the devices
    that joined; raises ``PairingClosed`` after ``max_failures`` wrong codes, because each
    attempt is one online guess at the code.
    """
    password = normalise_code(code)
    await trio.to_thread.run_sync(load_membership, card)  # NotPaired: create the mesh first
    joined: list[PinnedPeer] = []
    failures = 0
    lock = trio.Lock()

    def report(attempt: PairingAttempt) -> None:
        (log.info if attempt.outcome == "joined" else log.warning)(
            "pairing attempt from %s: %s (%s)", attempt.address, attempt.outcome, attempt.detail
        )
        if on_attempt is not None:
            on_attempt(attempt)

    async def attempt(stream: trio.SocketStream) -> None:
        nonlocal failures
        address = _peer_address(stream)
        async with stream, lock:
            if scope.cancel_called:
                return
            channel = _Channel(stream, address)
            try:
                with trio.fail_after(attempt_timeout):
                    peer = await _admit(identity, card, password, role, channel,
                                        left=max_failures - failures - 1)
            except WrongCode as exc:
                failures += 1
                report(PairingAttempt(address, "wrong-code", str(exc)))
                if failures >= max_failures:
                    scope.cancel()
                return
            except (PairingError, trio.TooSlowError, trio.BrokenResourceError) as exc:
                report(PairingAttempt(address, "failed", str(exc) or "timed out"))
                return
            except Exception as exc:
                # One hostile or broken joiner must not end the window for the others.
                log.exception("pairing attempt from %s hit an unexpected error", address)
                report(PairingAttempt(address, "failed", f"unexpected error: {exc!r}"))
                return
            joined.append(peer)
            report(PairingAttempt(address, "joined", f"{peer.name} ({peer.short_id})", peer))
            if max_joins is not None and len(joined) >= max_joins:
                scope.cancel()

    with trio.move_on_after(window) as scope:
        await trio.serve_tcp(attempt, port, host=host, task_status=task_status)
    if failures >= max_failures:
        raise PairingClosed(
            f"pairing closed after {failures} wrong codes; "
            "start pairing again to show a new code"
        )
    return joined


def _peer_address(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return "?"
    return f"{host}:{port}"


async def _admit(
    identity: Identity, card: Path, password: bytes, role: Role, channel: _Channel, *, left: int
) -> PinnedPeer:
    from spake2 import SPAKE2_B, SPAKEError  # builds its group tables: only when pairing

    address = channel.address
    hello = _expect(await channel.receive(), "join", address)
    spake = SPAKE2_B(password, idA=_ID_JOINER, idB=_ID_ADMITTER)
    ours = spake.start()
    theirs = hello.get("spake")
    try:
        if not isinstance(theirs, bytes):
            raise TypeError("not bytes")
        key = spake.finish(theirs)
    except (SPAKEError, TypeError, ValueError) as exc:
        raise PairingError(f"{address} sent a malformed SPAKE2 message") from exc
    await channel.send(t="spake", spake=ours)
    seal = _Seal(key, theirs + ours, joiner=False)
    frame = _expect(await channel.receive(), "sealed", address)
    try:
        joiner = PinnedPeer.from_wire(seal.open(frame.get("box")))
    except (InvalidTag, ValueError) as exc:
        with contextlib.suppress(trio.BrokenResourceError):
            await channel.send(t="wrong-code", left=max(left, 0))
        raise WrongCode(f"{address} typed a wrong pairing code ({max(left, 0)} attempt(s) left)") from exc
    if joiner.device_id == identity.device_id:
        raise PairingError(f"{address} presented this device's own certificate")
    membership = await trio.to_thread.run_sync(load_membership, card)
    members = [m.to_wire() for m in membership.peers if m.device_id != joiner.device_id]
    await channel.send(
        t="sealed",
        box=seal.seal(
            {
                "me": _self_pin(identity, role),
                "you": joiner.device_id,
                "mesh_id": membership.mesh_id,
                "members": members,
            }
        ),
    )
    ack = _expect(await channel.receive(), "sealed", address)
    try:
        if seal.open(ack.get("box")).get("ack") is not True:
            raise InvalidTag()
    except (InvalidTag, ValueError) as exc:
        raise PairingError(f"{address} did not confirm the pairing") from exc
    await trio.to_thread.run_sync(learn_members, card, identity, [joiner])
    return joiner
