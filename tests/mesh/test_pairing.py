"""Pairing with a short code over real loopback TCP: SPAKE2, sealed certificates, pins on both sides."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import trio

from mesh import pairing, tls
from mesh.errors import NotPaired, PairingClosed, PairingError, WrongCode
from mesh.identity import Identity
from mesh.pairing import (
    PairingAttempt,
    create_mesh,
    join_mesh,
    learn_members,
    load_membership,
    membership_path,
    new_pairing_code,
    serve_pairing,
)
from protocol.messages import Role


@pytest.fixture
def cards(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name in ("creator", "a", "b"):
        Identity.create(tmp_path / name, name=f"cam {name}")
        out[name] = tmp_path / name
    return out


async def start_pairing(
    nursery: trio.Nursery, card: Path, code: str, attempts: list[PairingAttempt],
    results: list[object], **kw: object,
) -> int:
    async def run(task_status: trio.TaskStatus[list[trio.SocketListener]]) -> None:
        try:
            results.append(await serve_pairing(
                Identity.load(card), card, code, role=Role.CAMERA, host="127.0.0.1", port=0,
                on_attempt=attempts.append, task_status=task_status, **kw,  # type: ignore[arg-type]
            ))
        except PairingError as exc:
            results.append(exc)

    listeners = await nursery.start(run)
    return tls.listening_port(listeners)


async def join(card: Path, code: str, port: int, role: Role = Role.CAMERA) -> pairing.Membership:
    return await join_mesh(Identity.load(card), card, code, role=role, host="127.0.0.1", port=port)


async def test_the_right_code_pairs_and_pins_both_sides(cards: dict[str, Path]) -> None:
    creator, a = cards["creator"], cards["a"]
    mesh = create_mesh(creator)
    code = new_pairing_code()
    attempts: list[PairingAttempt] = []
    results: list[object] = []
    async with trio.open_nursery() as nursery:
        port = await start_pairing(nursery, creator, code, attempts, results, max_joins=1)
        joined = await join(a, code.upper().replace("-", " "), port, role=Role.DESK)
    assert joined.mesh_id == mesh.mesh_id
    assert [p.device_id for p in joined.peers] == [Identity.load(creator).device_id]
    assert joined.peers[0].role is Role.CAMERA
    creator_pins = load_membership(creator)
    assert [p.device_id for p in creator_pins.peers] == [Identity.load(a).device_id]
    assert creator_pins.peers[0].role is Role.DESK
    assert load_membership(a) == joined
    assert [x.outcome for x in attempts] == ["joined"]
    assert results == [list(creator_pins.peers)]
    # the pins file names each peer, and never holds the code
    text = membership_path(creator).read_text()
    assert json.loads(text)["peers"][0]["name"] == "cam a"
    assert code.replace("-", "") not in text


async def test_a_wrong_code_is_refused_on_both_sides_and_the_window_closes(
    cards: dict[str, Path],
) -> None:
    creator, a = cards["creator"], cards["a"]
    create_mesh(creator)
    attempts: list[PairingAttempt] = []
    results: list[object] = []
    async with trio.open_nursery() as nursery:
        port = await start_pairing(nursery, creator, "abcd-efgh", attempts, results,
                                   max_failures=2)
        with pytest.raises(WrongCode, match=r"refused the pairing code.*1 attempt"):
            await join(a, "abcd-efgx", port)
        with pytest.raises(WrongCode, match="0 attempt"):
            await join(a, "abcd-efgy", port)
        # the window is closed now: even the right code cannot get in
        with pytest.raises(PairingError):
            await join(a, "abcd-efgh", port)
    assert [x.outcome for x in attempts] == ["wrong-code", "wrong-code"]
    assert "wrong pairing code" in attempts[0].detail
    assert len(results) == 1 and isinstance(results[0], PairingClosed)
    assert "2 wrong codes" in str(results[0])
    assert load_membership(creator).peers == ()
    with pytest.raises(NotPaired):
        load_membership(a)


async def test_a_man_in_the_middle_swapping_certificates_is_detected(
    cards: dict[str, Path],
) -> None:
    """Mallory relays the joiner's SPAKE2 traffic but substitutes her own sealed certificate.

    Without the code she cannot seal a box the creator opens, so the creator refuses and
    pins nothing; the joiner, cut off, pins nothing either.
    """
    creator, a, mallory = cards["creator"], cards["a"], cards["b"]
    create_mesh(creator)
    code = new_pairing_code()
    attempts: list[PairingAttempt] = []
    results: list[object] = []
    relayed: list[bytes] = []

    async with trio.open_nursery() as nursery:
        port = await start_pairing(nursery, creator, code, attempts, results, max_joins=1)

        async def mitm(client: trio.SocketStream) -> None:
            upstream = await trio.open_tcp_stream("127.0.0.1", port)
            joiner = pairing._Channel(client, "joiner")
            creator_side = pairing._Channel(upstream, "creator")
            hello = await joiner.receive()
            relayed.append(hello["spake"])
            await creator_side.send(**{k: v for k, v in hello.items() if k != "v"})
            answer = await creator_side.receive()
            await joiner.send(**{k: v for k, v in answer.items() if k != "v"})
            sealed = await joiner.receive()
            # swap: Mallory's certificate, sealed under a key derived from her guess
            guess = pairing._Seal(b"\0" * 32, hello["spake"] + answer["spake"], joiner=True)
            box = guess.seal(pairing._self_pin(Identity.load(mallory), Role.CAMERA))
            assert box != sealed["box"]
            await creator_side.send(t="sealed", box=box)
            verdict = await creator_side.receive()
            await joiner.send(**{k: v for k, v in verdict.items() if k != "v"})
            await upstream.aclose()
            await client.aclose()

        listeners = await nursery.start(functools.partial(trio.serve_tcp, mitm, 0,
                                                          host="127.0.0.1"))
        mitm_port = tls.listening_port(listeners)
        with pytest.raises(WrongCode):
            await join(a, code, mitm_port)
        nursery.cancel_scope.cancel()
    assert [x.outcome for x in attempts] == ["wrong-code"]
    assert load_membership(creator).peers == ()
    with pytest.raises(NotPaired):
        load_membership(a)


async def test_a_tampered_answer_is_detected_by_the_joiner(cards: dict[str, Path]) -> None:
    """A relay that alters the creator's sealed answer (say, its certificate) breaks the seal."""
    creator, a = cards["creator"], cards["a"]
    create_mesh(creator)
    code = new_pairing_code()
    attempts: list[PairingAttempt] = []
    results: list[object] = []
    async with trio.open_nursery() as nursery:
        port = await start_pairing(nursery, creator, code, attempts, results, max_joins=1,
                                   attempt_timeout=5.0)

        async def mitm(client: trio.SocketStream) -> None:
            upstream = await trio.open_tcp_stream("127.0.0.1", port)
            joiner = pairing._Channel(client, "joiner")
            creator_side = pairing._Channel(upstream, "creator")
            for _ in range(2):
                frame = await joiner.receive()
                await creator_side.send(**{k: v for k, v in frame.items() if k != "v"})
                frame = await creator_side.receive()
                if frame["t"] == "sealed":
                    box = bytearray(frame["box"])
                    box[40] ^= 1
                    frame["box"] = bytes(box)
                await joiner.send(**{k: v for k, v in frame.items() if k != "v"})
            await upstream.aclose()
            await client.aclose()

        listeners = await nursery.start(functools.partial(trio.serve_tcp, mitm, 0,
                                                          host="127.0.0.1"))
        with pytest.raises(PairingError, match="did not authenticate"):
            await join(a, code, tls.listening_port(listeners))
        with trio.fail_after(10):
            while not attempts:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert [x.outcome for x in attempts] == ["failed"]
    assert load_membership(creator).peers == ()  # never confirmed, never pinned
    with pytest.raises(NotPaired):
        load_membership(a)


async def test_three_devices_pair_with_one_code_and_then_all_connect(
    cards: dict[str, Path],
) -> None:
    creator, a, b = cards["creator"], cards["a"], cards["b"]
    ids = {n: Identity.load(c).device_id for n, c in cards.items()}
    create_mesh(creator)
    code = new_pairing_code()
    attempts: list[PairingAttempt] = []
    results: list[object] = []
    async with trio.open_nursery() as nursery:
        port = await start_pairing(nursery, creator, code, attempts, results, max_joins=2)
        await join(a, code, port)
        await join(b, code, port)
    assert {p.device_id for p in load_membership(creator).peers} == {ids["a"], ids["b"]}
    assert {p.device_id for p in load_membership(b).peers} == {ids["creator"], ids["a"]}
    assert {p.device_id for p in load_membership(a).peers} == {ids["creator"]}

    # a learns of b from the creator's TLS hello
    async def idle(stream: tls.PeerStream) -> None:
        await stream.receive_some()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(
            tls.serve, Identity.load(creator), functools.partial(load_membership, creator), idle,
            host="127.0.0.1", port=0))
        stream = await tls.connect(Identity.load(a), load_membership(a), "127.0.0.1",
                                   tls.listening_port(listeners))
        learn_members(a, Identity.load(a), stream.peer_members)
        await stream.aclose()
        nursery.cancel_scope.cancel()
    assert {p.device_id for p in load_membership(a).peers} == {ids["creator"], ids["b"]}

    # and now a and b, who never met, accept each other
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(
            tls.serve, Identity.load(b), load_membership(b), idle, host="127.0.0.1", port=0))
        stream = await tls.connect(Identity.load(a), load_membership(a), "127.0.0.1",
                                   tls.listening_port(listeners), expect=ids["b"])
        assert stream.peer_id == ids["b"]
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_a_card_of_another_mesh_cannot_join(cards: dict[str, Path]) -> None:
    creator, a = cards["creator"], cards["a"]
    create_mesh(creator)
    create_mesh(a)
    code = new_pairing_code()
    attempts: list[PairingAttempt] = []
    results: list[object] = []
    async with trio.open_nursery() as nursery:
        port = await start_pairing(nursery, creator, code, attempts, results, window=10.0,
                                   attempt_timeout=5.0)
        with pytest.raises(PairingError, match="another mesh"):
            await join(a, code, port)
        nursery.cancel_scope.cancel()
    assert load_membership(creator).peers == ()


def test_mesh_hash_hides_the_mesh_id(cards: dict[str, Path]) -> None:
    mesh = create_mesh(cards["creator"])
    assert len(mesh.mesh_hash) == 64 and mesh.mesh_id not in mesh.mesh_hash
    with pytest.raises(PairingError, match="already belongs"):
        create_mesh(cards["creator"])


@pytest.mark.parametrize("code", ["", "ab-c", "   "])
def test_too_short_codes_are_refused(code: str) -> None:
    with pytest.raises(PairingError, match="too short"):
        pairing.normalise_code(code)


async def test_garbage_on_the_pairing_port_fails_one_attempt_only(cards: dict[str, Path]) -> None:
    creator, a = cards["creator"], cards["a"]
    create_mesh(creator)
    code = new_pairing_code()
    attempts: list[PairingAttempt] = []
    results: list[object] = []
    async with trio.open_nursery() as nursery:
        port = await start_pairing(nursery, creator, code, attempts, results, max_joins=1,
                                   max_failures=1)
        for junk in (b"\xff\xff\xff\xff", b"\0\0\0\x03abc", b"\0\0\0\x01\xc1",
                     b"\0\0\0\x0b" + b"\x82\xa1v\x01\xa1t\xa4join"[:11]):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.send_all(junk)
            await stream.send_eof()
            with trio.fail_after(10):
                while await stream.receive_some():
                    pass
            await stream.aclose()
        joined = await join(a, code, port)
    assert [x.outcome for x in attempts] == ["failed"] * 4 + ["joined"]
    assert joined.peers[0].device_id == Identity.load(creator).device_id
