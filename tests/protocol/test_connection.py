"""The connection state machine: every (state, message) pair each way, and two connections talking."""

from __future__ import annotations

import struct
from collections import deque

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from protocol.codec import encode
from protocol.connection import Connection, State
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.messages import (
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    Catalog,
    Chunk,
    Error,
    Goodbye,
    Hello,
    Limits,
    Message,
    Ping,
    Pong,
    Purpose,
    Role,
    ThumbnailOffer,
)
from tests.protocol.test_messages import VALID

US = "a" * 64
THEM = "b" * 64
H, C, R, CLOSING, CLOSED = (
    State.HANDSHAKE,
    State.CATALOG,
    State.RUNNING,
    State.CLOSING,
    State.CLOSED,
)

# The rules in words (the module docstring of protocol/connection.py), restated
# independently of its table: what a side in a state may send, and where it goes.
SPEC: dict[State, dict[str, State]] = {
    H: {"hello": C, "bye": CLOSED, "error": CLOSED},
    C: {"catalog": R, "ping": C, "pong": C, "bye": CLOSED, "error": CLOSED},
    R: {"data": R, "ping": R, "pong": R, "bye": CLOSED, "error": CLOSED},
    CLOSING: {"bye": CLOSED, "error": CLOSED},
    CLOSED: {},
}
NAMED = {"hello", "catalog", "ping", "pong", "bye", "error"}


def kind_of(msg: Message) -> str:
    return msg.TAG if msg.TAG in NAMED else "data"


def spec_next(state: State, msg: Message) -> State | None:
    return SPEC[state].get(kind_of(msg))


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


def example(cls: type[Message], sender: str) -> Message:
    return hello(sender) if cls is Hello else cls(**VALID[cls])


def with_our_state(state: State) -> Connection:
    """A connection whose own side is in ``state`` (their side as early as allows it)."""
    conn = Connection(US, expected_peer=THEM)
    if state in (C, R):
        conn.send(hello(US))
    if state is R:
        conn.send(Catalog())
    if state is CLOSING:
        conn.receive_data(encode(Goodbye(reason="bye")))
        assert conn.next_event() == Goodbye(reason="bye")
    if state is CLOSED:
        conn.send(Goodbye(reason="done"))
    assert conn.our_state is state
    return conn


def with_their_state(state: State) -> Connection:
    """A connection whose peer's side is in ``state``; their side is never CLOSING."""
    conn = Connection(US, expected_peer=THEM)
    frames = {
        H: [],
        C: [hello(THEM)],
        R: [hello(THEM), Catalog()],
        CLOSED: [Goodbye(reason="done")],
    }[state]
    for msg in frames:
        conn.receive_data(encode(msg))
        assert conn.next_event() == msg
    assert conn.their_state is state
    return conn


CASES = [(s, cls) for s in State for cls in MESSAGE_TYPES]


@pytest.mark.parametrize(("state", "cls"), CASES, ids=[f"{s.value}-{c.TAG}" for s, c in CASES])
def test_sending_each_message_in_each_state(state: State, cls: type[Message]) -> None:
    conn = with_our_state(state)
    theirs = conn.their_state
    msg = example(cls, US)
    expected = spec_next(state, msg)
    if expected is None:
        with pytest.raises(LocalProtocolError):
            conn.send(msg)
        assert conn.our_state is state  # an illegal send changes nothing
        assert conn.their_state is theirs
    else:
        assert conn.send(msg) == encode(msg)
        assert conn.our_state is expected
        assert conn.their_state is (CLOSED if cls is Error else theirs)


THEIR_CASES = [(s, cls) for s in (H, C, R, CLOSED) for cls in MESSAGE_TYPES]


@pytest.mark.parametrize(
    ("state", "cls"), THEIR_CASES, ids=[f"{s.value}-{c.TAG}" for s, c in THEIR_CASES]
)
def test_receiving_each_message_in_each_state(state: State, cls: type[Message]) -> None:
    conn = with_their_state(state)
    ours = conn.our_state
    msg = example(cls, THEM)
    expected = spec_next(state, msg)
    conn.receive_data(encode(msg))
    assert conn.their_state is state  # nothing moves before the event is handed out
    if expected is None:
        with pytest.raises(RemoteProtocolError) as info:
            conn.next_event()
        assert info.value.code == "unexpected-message"
        assert conn.our_state is CLOSED and conn.their_state is CLOSED
    else:
        assert conn.next_event() == msg
        assert conn.their_state is expected
        want = {Error: CLOSED, Goodbye: CLOSED if ours is CLOSED else CLOSING}.get(cls, ours)
        assert conn.our_state is want


def test_states_advance_only_as_events_are_handed_out() -> None:
    conn = Connection(US, expected_peer=THEM)
    conn.receive_data(encode(hello(THEM)) + encode(Catalog(seen={US: 4})))
    assert conn.their_state is H and conn.peer_hello is None
    assert conn.next_event() == hello(THEM)
    assert conn.their_state is C and conn.peer_hello == hello(THEM)
    assert conn.peer_catalog is None
    assert conn.next_event() == Catalog(seen={US: 4})
    assert conn.their_state is R and conn.peer_catalog == Catalog(seen={US: 4})
    assert conn.next_event() is None


def test_our_hello_may_go_before_theirs_arrives_and_each_side_moves_alone() -> None:
    conn = Connection(US, expected_peer=THEM)
    conn.send(hello(US))
    conn.send(Catalog())
    assert (conn.our_state, conn.their_state) == (R, H)
    conn.send(Chunk(image_id=US, purpose=Purpose.SYNC, offset=0, data=b"x"))
    conn.receive_data(encode(hello(THEM)))
    conn.next_event()
    assert (conn.our_state, conn.their_state) == (R, C)


@pytest.mark.parametrize(
    ("peer_hello", "code"),
    [
        (hello("c" * 64), "wrong-peer"),  # not the device TLS authenticated
        (hello(US), "wrong-peer"),  # claims to be us
        (hello(THEM, version=PROTOCOL_VERSION + 1), "bad-version"),
        (hello(THEM, version=0), "bad-version"),
    ],
)
def test_a_hello_from_the_wrong_device_or_version_kills_the_connection(
    peer_hello: Hello, code: str
) -> None:
    conn = Connection(US, expected_peer=THEM)
    conn.receive_data(encode(peer_hello))
    with pytest.raises(RemoteProtocolError) as info:
        conn.next_event()
    assert info.value.code == code
    assert conn.peer_hello is None
    assert conn.error is info.value


def test_without_an_expected_peer_any_other_device_may_say_hello() -> None:
    conn = Connection(US)
    conn.receive_data(encode(hello("c" * 64)))
    assert conn.next_event() == hello("c" * 64)


def test_a_dead_connection_raises_on_every_call_but_may_send_one_error() -> None:
    conn = Connection(US, expected_peer=THEM)
    conn.receive_data(encode(Chunk(image_id=US, purpose=Purpose.SYNC, offset=0, data=b"x")))
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(encode(hello(THEM)))
    with pytest.raises(LocalProtocolError):
        conn.send(hello(US))
    frame = conn.send(Error(code="unexpected-message", message="chunk before hello"))
    assert frame == encode(Error(code="unexpected-message", message="chunk before hello"))
    with pytest.raises(LocalProtocolError):
        conn.send(Error(code="again", message="twice"))


def test_malformed_and_oversized_frames_kill_the_connection() -> None:
    conn = Connection(US, expected_peer=THEM)
    conn.receive_data(struct.pack(">I", 1) + b"\xc1")
    with pytest.raises(RemoteProtocolError) as info:
        conn.next_event()
    assert info.value.code == "bad-msgpack"
    conn = Connection(US, expected_peer=THEM)
    with pytest.raises(RemoteProtocolError) as info:
        conn.receive_data(struct.pack(">I", Limits.MAX_FRAME + 1))
    assert info.value.code == "frame-too-large"
    assert conn.our_state is CLOSED
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_our_hello_must_name_us_and_speak_our_version() -> None:
    conn = Connection(US)
    for bad in (hello(THEM), hello(US, version=PROTOCOL_VERSION + 1)):
        with pytest.raises(LocalProtocolError):
            conn.send(bad)
        assert conn.our_state is H


def test_after_our_goodbye_their_in_flight_messages_still_arrive() -> None:
    conn = with_our_state(R)
    for msg in (hello(THEM), Catalog()):
        conn.receive_data(encode(msg))
        conn.next_event()
    conn.send(Goodbye(reason="leaving"))
    offer = ThumbnailOffer(**VALID[ThumbnailOffer])
    conn.receive_data(encode(offer) + encode(Goodbye(reason="ok")))
    assert conn.next_event() == offer
    assert conn.next_event() == Goodbye(reason="ok")
    assert (conn.our_state, conn.their_state) == (CLOSED, CLOSED)


def test_after_their_goodbye_we_may_only_say_goodbye() -> None:
    conn = with_our_state(CLOSING)
    with pytest.raises(LocalProtocolError):
        conn.send(Ping(nonce=1))
    conn.send(Goodbye(reason="ok"))
    assert conn.our_state is CLOSED
    conn.receive_data(encode(Pong(nonce=1)))
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


# --- two connections talking, against a model of the states ------------------------------

KINDS = [Hello, Catalog, Ping, Pong, Goodbye, Error, ThumbnailOffer, Chunk]


class Side:
    """The model of one Connection: its two states, restated from SPEC."""

    def __init__(self) -> None:
        self.ours = H
        self.theirs = H
        self.dead = False
        self.error_sent = False


class TwoConnections(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.conns = {US: Connection(US, expected_peer=THEM), THEM: Connection(THEM, US)}
        self.model = {US: Side(), THEM: Side()}
        # Bytes on the way to each device, and the messages they carry, in order.
        self.wire: dict[str, bytearray] = {US: bytearray(), THEM: bytearray()}
        self.in_flight: dict[str, deque[Message]] = {US: deque(), THEM: deque()}
        self.fed = {US: 0, THEM: 0}  # bytes fed to each device and not yet handed out

    @staticmethod
    def other(device: str) -> str:
        return THEM if device == US else US

    @rule(device=st.sampled_from([US, THEM]), cls=st.sampled_from(KINDS))
    def send(self, device: str, cls: type[Message]) -> None:
        conn, side = self.conns[device], self.model[device]
        msg = example(cls, device)
        if side.dead:
            legal = cls is Error and not side.error_sent
            after: State | None = CLOSED if legal else None
        else:
            after = spec_next(side.ours, msg)
        if after is None:
            with pytest.raises(LocalProtocolError):
                conn.send(msg)
            return
        frame = conn.send(msg)
        side.ours = after
        if cls is Error:
            side.theirs = CLOSED
            side.error_sent = side.error_sent or side.dead
        to = self.other(device)
        self.wire[to] += frame
        self.in_flight[to].append(msg)

    @precondition(lambda self: any(self.wire.values()))
    @rule(device=st.sampled_from([US, THEM]), size=st.integers(1, 400))
    def deliver(self, device: str, size: int) -> None:
        conn, side = self.conns[device], self.model[device]
        data = bytes(self.wire[device][:size])
        del self.wire[device][:size]
        if side.dead:
            if data:
                with pytest.raises(RemoteProtocolError):
                    conn.receive_data(data)
            return
        conn.receive_data(data)
        self.fed[device] += len(data)
        while True:
            expected_msg = self.in_flight[device][0] if self.in_flight[device] else None
            after = spec_next(side.theirs, expected_msg) if expected_msg is not None else None
            if expected_msg is not None and after is None and self._complete(device):
                with pytest.raises(RemoteProtocolError):
                    conn.next_event()
                side.dead = True
                side.ours = side.theirs = CLOSED
                self.wire[device].clear()
                self.in_flight[device].clear()
                return
            event = conn.next_event()
            if event is None:
                return
            assert event == self.in_flight[device].popleft()
            self.fed[device] -= len(encode(event))
            assert after is not None
            side.theirs = after
            if isinstance(event, Error):
                side.ours = CLOSED
            elif isinstance(event, Goodbye) and side.ours is not CLOSED:
                side.ours = CLOSING

    def _complete(self, device: str) -> bool:
        """True when the first message in flight to ``device`` has wholly arrived."""
        return self.fed[device] >= len(encode(self.in_flight[device][0]))

    @invariant()
    def states_match_the_model(self) -> None:
        for device, conn in self.conns.items():
            side = self.model[device]
            assert (conn.our_state, conn.their_state) == (side.ours, side.theirs)
            if conn.their_state in (C, R) and not side.dead:
                assert conn.peer_hello is not None
                assert conn.peer_hello.device_id == self.other(device)


test_two_connections = TwoConnections.TestCase
