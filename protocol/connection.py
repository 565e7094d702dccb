"""One connection's protocol state, sans-IO: bytes in, messages out; messages in, bytes out.

The rules, each side tracked on its own (we may send our Hello before theirs
arrives):

1. HANDSHAKE: a side's first message is its Hello; the peer's must name the
   device the TLS layer authenticated and speak our protocol version.
2. CATALOG: then its Catalog (what it has seen, for the delta); Ping/Pong allowed.
3. RUNNING: everything else -- thumbnails, requests, chunks, dispersal,
   read-out, release, Ping/Pong.  Never a second Hello or Catalog.
4. Goodbye or Error ends a side (CLOSED).  When *their* Goodbye arrives our side
   is CLOSING: we may still say Goodbye (or Error), nothing else.  Our Goodbye
   leaves their side as it was, since what they sent before reading it is
   still legal.  An Error closes both sides at once.
5. A message a side may not send in its state is an error: LocalProtocolError
   from ``send`` (our bug), RemoteProtocolError from ``next_event`` (theirs).
   After a RemoteProtocolError the connection is dead: every call raises,
   except one ``send(Error(...))`` so the peer can learn why.

The table below is the whole of rules 1-4; the methods only look it up.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final, NoReturn

from protocol.codec import FrameDecoder, encode
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.messages import PROTOCOL_VERSION, Catalog, Error, Goodbye, Hello, Message, Ping, Pong


class State(enum.StrEnum):
    """Where one side of a connection is."""

    HANDSHAKE = "handshake"
    CATALOG = "catalog"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


DATA: Final = "data"  # any message type the row does not name

H, C, R, CLOSING, CLOSED = (
    State.HANDSHAKE,
    State.CATALOG,
    State.RUNNING,
    State.CLOSING,
    State.CLOSED,
)

# What a side in a state may send, and the state sending it takes that side to.
TRANSITIONS: Final[Mapping[State, Mapping[type[Message] | str, State]]] = {
    H: {Hello: C, Goodbye: CLOSED, Error: CLOSED},
    C: {Catalog: R, Ping: C, Pong: C, Goodbye: CLOSED, Error: CLOSED},
    R: {DATA: R, Ping: R, Pong: R, Goodbye: CLOSED, Error: CLOSED},
    CLOSING: {Goodbye: CLOSED, Error: CLOSED},
    CLOSED: {},
}

# Messages that may never be DATA, whatever a row says.
_NAMED: Final = frozenset({Hello, Catalog, Ping, Pong, Goodbye, Error})


def next_state(state: State, msg: Message) -> State | None:
    """The state a side moves to by sending ``msg`` in ``state``; None if it may not."""
    row = TRANSITIONS[state]
    kind = type(msg)
    if kind in row:
        return row[kind]
    if kind in _NAMED:
        return None
    return row.get(DATA)


class Connection:
    """The protocol state of one connection to one peer (h11-style, no I/O)."""

    def __init__(self, our_device_id: str, expected_peer: str | None = None) -> None:
        self._us = our_device_id
        self._expected = expected_peer
        self._decoder = FrameDecoder()
        self._ours = State.HANDSHAKE
        self._theirs = State.HANDSHAKE
        self._peer_hello: Hello | None = None
        self._peer_catalog: Catalog | None = None
        self._error: RemoteProtocolError | None = None
        self._error_sent = False

    # --- what we know ----------------------------------------------------------------

    @property
    def our_state(self) -> State:
        return self._ours

    @property
    def their_state(self) -> State:
        return self._theirs

    @property
    def peer_hello(self) -> Hello | None:
        """The peer's Hello, once it has been handed out by ``next_event``."""
        return self._peer_hello

    @property
    def peer_catalog(self) -> Catalog | None:
        """The peer's Catalog, once it has been handed out by ``next_event``."""
        return self._peer_catalog

    @property
    def error(self) -> RemoteProtocolError | None:
        """The remote protocol error that killed this connection, if one did."""
        return self._error

    # --- sending ---------------------------------------------------------------------

    def send(self, msg: Message) -> bytes:
        """The frame for ``msg``; LocalProtocolError if we may not send it now."""
        if self._error is not None:
            if isinstance(msg, Error) and not self._error_sent:
                self._error_sent = True
                self._ours = CLOSED
                return encode(msg)
            raise LocalProtocolError(
                f"cannot send {msg.TAG!r}: the connection failed ({self._error}); close it",
                code="closed",
            )
        after = next_state(self._ours, msg)
        if after is None:
            raise LocalProtocolError(
                f"cannot send {msg.TAG!r} while our side is {self._ours.value}",
                code="illegal-send",
            )
        if isinstance(msg, Hello):
            if msg.device_id != self._us:
                raise LocalProtocolError(
                    f"our Hello names {msg.device_id[:12]}, but we are {self._us[:12]}",
                    code="illegal-send",
                )
            if msg.version != PROTOCOL_VERSION:
                raise LocalProtocolError(
                    f"our Hello says version {msg.version}; we speak {PROTOCOL_VERSION}",
                    code="illegal-send",
                )
        frame = encode(msg)  # may raise LocalProtocolError: then nothing changed
        self._ours = after
        if isinstance(msg, Error):
            self._theirs = CLOSED
        return frame

    # --- receiving -------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Bytes from the peer, any slice of the stream; RemoteProtocolError for an oversized frame."""
        self._raise_if_dead()
        try:
            self._decoder.feed(data)
        except RemoteProtocolError as exc:
            self._die(exc)

    def next_event(self) -> Message | None:
        """The peer's next message, or None until more bytes arrive.

        Raises RemoteProtocolError for a malformed frame or a message the peer
        may not send in its state; the connection is then dead.
        """
        self._raise_if_dead()
        try:
            msg = self._decoder.next_message()
            if msg is None:
                return None
            self._accept(msg)
        except RemoteProtocolError as exc:
            self._die(exc)
        return msg

    def _accept(self, msg: Message) -> None:
        after = next_state(self._theirs, msg)
        if after is None:
            raise RemoteProtocolError(
                f"peer sent {msg.TAG!r} while its side is {self._theirs.value}",
                code="unexpected-message",
            )
        if isinstance(msg, Hello):
            self._check_hello(msg)
            self._peer_hello = msg
        elif isinstance(msg, Catalog):
            self._peer_catalog = msg
        self._theirs = after
        if isinstance(msg, Error):
            self._ours = CLOSED
        elif isinstance(msg, Goodbye) and self._ours is not CLOSED:
            self._ours = CLOSING

    def _check_hello(self, hello: Hello) -> None:
        if hello.version != PROTOCOL_VERSION:
            raise RemoteProtocolError(
                f"peer speaks protocol version {hello.version}, we speak {PROTOCOL_VERSION}: "
                "upgrade the older device",
                code="bad-version",
            )
        if hello.device_id == self._us:
            raise RemoteProtocolError(
                "peer's Hello claims to be this very device", code="wrong-peer"
            )
        if self._expected is not None and hello.device_id != self._expected:
            raise RemoteProtocolError(
                f"peer's Hello says it is {hello.device_id[:12]}, but TLS authenticated "
                f"{self._expected[:12]}",
                code="wrong-peer",
            )

    # --- failure ----------------------------------------------------------------------

    def _raise_if_dead(self) -> None:
        if self._error is not None:
            raise RemoteProtocolError(
                f"the connection already failed: {self._error}", code=self._error.code
            ) from self._error

    def _die(self, exc: RemoteProtocolError) -> NoReturn:
        self._error = exc
        self._ours = self._theirs = CLOSED
        raise exc
