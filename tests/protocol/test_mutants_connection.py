"""Kill-tests for protocol/connection.py's mutants (issue 14): codes, reasons and states it reports.

The error codes travel to the peer in an Error and into the log, and the words
tell a person what happened and what to do (STYLE.md, rule 4): both are
behaviour, so both are pinned here.
"""

from __future__ import annotations

import pytest

from protocol.codec import encode
from protocol.connection import Connection, State, next_state
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.messages import (
    PROTOCOL_VERSION,
    Catalog,
    Chunk,
    Error,
    Goodbye,
    Hello,
    Ping,
    Pong,
    Purpose,
    Role,
)

US = "a" * 64
THEM = "b" * 64
OTHER = "c" * 64


def hello(device: str, *, version: int = PROTOCOL_VERSION) -> Hello:
    return Hello(
        device_id=device,
        name="dev",
        role=Role.CAMERA,
        version=version,
        capabilities=(),
        capacity=1000,
        free=1000,
    )


def chunk() -> Chunk:
    return Chunk(image_id=US, purpose=Purpose.SYNC, offset=0, data=b"x")


def receive(conn: Connection, *msgs: object) -> None:
    for msg in msgs:
        conn.receive_data(encode(msg))  # type: ignore[arg-type]
        assert conn.next_event() == msg


def running() -> Connection:
    conn = Connection(US, expected_peer=THEM)
    conn.send(hello(US))
    conn.send(Catalog())
    receive(conn, hello(THEM), Catalog())
    return conn


def test_the_table_names_data_only_in_running() -> None:
    assert next_state(State.RUNNING, chunk()) is State.RUNNING
    assert next_state(State.CATALOG, chunk()) is None
    assert next_state(State.RUNNING, hello(US)) is None  # named, and not in the row
    assert next_state(State.CATALOG, Ping(1)) is State.CATALOG
    assert next_state(State.CLOSED, Goodbye(reason="x")) is None


def test_a_message_sent_out_of_turn_is_our_bug_with_its_code_and_state() -> None:
    conn = Connection(US, expected_peer=THEM)
    with pytest.raises(LocalProtocolError) as caught:
        conn.send(chunk())
    assert caught.value.code == "illegal-send"
    assert str(caught.value) == "cannot send 'chunk' while our side is handshake"


def test_our_hello_naming_another_device_or_version_is_our_bug_in_words() -> None:
    conn = Connection(US)
    with pytest.raises(LocalProtocolError) as caught:
        conn.send(hello(THEM))
    assert caught.value.code == "illegal-send"
    assert str(caught.value) == f"our Hello names {THEM[:12]}, but we are {US[:12]}"
    with pytest.raises(LocalProtocolError) as caught:
        conn.send(hello(US, version=PROTOCOL_VERSION + 1))
    assert caught.value.code == "illegal-send"
    assert str(caught.value) == (
        f"our Hello says version {PROTOCOL_VERSION + 1}; we speak {PROTOCOL_VERSION}"
    )
    assert conn.our_state is State.HANDSHAKE


def test_a_dead_connection_says_why_in_every_refusal() -> None:
    conn = Connection(US, expected_peer=THEM)
    conn.receive_data(encode(chunk()))
    with pytest.raises(RemoteProtocolError) as first:
        conn.next_event()
    assert first.value.code == "unexpected-message"
    assert str(first.value) == "peer sent 'chunk' while its side is handshake"
    assert (conn.our_state, conn.their_state) == (State.CLOSED, State.CLOSED)
    with pytest.raises(RemoteProtocolError) as again:
        conn.next_event()
    assert again.value.code == "unexpected-message"  # the first error's code, kept
    assert again.value.__cause__ is first.value
    assert str(again.value) == f"the connection already failed: {first.value}"
    with pytest.raises(RemoteProtocolError) as fed:
        conn.receive_data(b"\x00")
    assert fed.value.code == "unexpected-message"
    with pytest.raises(LocalProtocolError) as sent:
        conn.send(Ping(1))
    assert sent.value.code == "closed"
    assert str(sent.value) == f"cannot send 'ping': the connection failed ({first.value}); close it"
    conn.send(Error(code="unexpected-message", message="chunk first"))
    assert conn.our_state is State.CLOSED
    with pytest.raises(LocalProtocolError) as twice:
        conn.send(Error(code="unexpected-message", message="chunk first"))
    assert twice.value.code == "closed"


def test_a_frame_that_fails_to_decode_leaves_the_connection_dead() -> None:
    conn = Connection(US, expected_peer=THEM)
    conn.receive_data(b"\x00\x00\x00\x01\xc1")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    assert conn.error is not None and conn.error.code == "bad-msgpack"
    assert (conn.our_state, conn.their_state) == (State.CLOSED, State.CLOSED)


def test_a_hello_in_another_version_says_upgrade() -> None:
    conn = Connection(US, expected_peer=THEM)
    conn.receive_data(encode(hello(THEM, version=PROTOCOL_VERSION + 1)))
    with pytest.raises(RemoteProtocolError) as caught:
        conn.next_event()
    assert str(caught.value) == (
        f"peer speaks protocol version {PROTOCOL_VERSION + 1}, we speak {PROTOCOL_VERSION}: "
        "upgrade the older device"
    )


def test_a_hello_claiming_to_be_us_or_another_device_is_refused_in_words() -> None:
    conn = Connection(US)
    conn.receive_data(encode(hello(US)))
    with pytest.raises(RemoteProtocolError) as caught:
        conn.next_event()
    assert (caught.value.code, str(caught.value)) == (
        "wrong-peer",
        "peer's Hello claims to be this very device",
    )
    conn = Connection(US, expected_peer=THEM)
    conn.receive_data(encode(hello(OTHER)))
    with pytest.raises(RemoteProtocolError) as caught:
        conn.next_event()
    assert str(caught.value) == (
        f"peer's Hello says it is {OTHER[:12]}, but TLS authenticated {THEM[:12]}"
    )


def test_our_error_closes_both_sides_and_theirs_closes_ours() -> None:
    conn = running()
    conn.send(Error(code="x", message="bye now"))
    assert (conn.our_state, conn.their_state) == (State.CLOSED, State.CLOSED)
    conn = running()
    receive(conn, Error(code="x", message="gone"))
    assert (conn.our_state, conn.their_state) == (State.CLOSED, State.CLOSED)


def test_their_goodbye_after_ours_keeps_our_side_closed() -> None:
    conn = running()
    conn.send(Goodbye(reason="done"))
    receive(conn, Pong(1), Goodbye(reason="ok"))
    assert (conn.our_state, conn.their_state) == (State.CLOSED, State.CLOSED)
    conn = running()
    receive(conn, Goodbye(reason="ok"))
    assert (conn.our_state, conn.their_state) == (State.CLOSING, State.CLOSED)


def test_the_peer_hello_and_catalog_are_kept_and_ours_are_not() -> None:
    conn = Connection(US, expected_peer=THEM)
    conn.send(hello(US))
    conn.send(Catalog(seen={US: 2}))
    assert conn.peer_hello is None and conn.peer_catalog is None
    receive(conn, hello(THEM), Catalog(seen={THEM: 3}))
    assert conn.peer_hello == hello(THEM)
    assert conn.peer_catalog == Catalog(seen={THEM: 3})
    assert conn.error is None
