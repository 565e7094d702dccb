"""Every message two cammesh devices can exchange, one frozen dataclass each.

Messages validate themselves on construction and raise ``LocalProtocolError``
for bad field values; the codec turns that into ``RemoteProtocolError`` when
the values came off the wire.  Every length has a limit (``Limits``).

Figures and claims cited are those of the seed patents (DESIGN.md).
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from protocol.errors import LocalProtocolError

PROTOCOL_VERSION: Final = 1

# A regex, measured against str.translate (0.47 µs), bytes.fromhex round trips (0.34 µs)
# and a set of digits: on real SHA-256 ids, this match (0.33 µs) is the fastest.
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")


class Limits:
    """Hard limits on everything a peer can make us hold in memory."""

    MAX_FRAME: Final = 1024 * 1024  # one frame, length prefix excluded
    MIN_CHUNK: Final = 64 * 1024
    MAX_CHUNK: Final = 256 * 1024
    DEFAULT_CHUNK: Final = 128 * 1024
    MAX_THUMBNAIL: Final = 256 * 1024
    MAX_NAME: Final = 255  # a device or file name, in characters
    MAX_TEXT: Final = 1024  # reasons and error messages
    MAX_METADATA_KEYS: Final = 64
    MAX_METADATA_VALUE: Final = 512  # characters of one string value
    MAX_CAPABILITIES: Final = 32
    MAX_ORIGINS: Final = 4096  # devices named in one catalog summary
    MAX_ORIGINAL: Final = 4 * 1024**3  # 4 GiB: a long movie clip
    MAX_WRAPPED_KEY: Final = 1024
    MAX_SIDE: Final = 16384


class Role(enum.StrEnum):
    """What a device is: a camera captures, a desk views and holds (DESIGN.md, "Roles")."""

    CAMERA = "camera"
    DESK = "desk"


class Purpose(enum.StrEnum):
    """Why an original travels; chunks are keyed by (image id, purpose) on a link."""

    SYNC = "sync"  # the receiver pulled it (FIG. 10, S63) or its policy pulls everything
    SMALLER = "smaller"  # a recompressed copy asked for (FIG. 10, S64-S65)
    DISPERSE = "disperse"  # owner -> holder (claims 1, 5, 15)
    COLLECT = "collect"  # holder -> owner (claims 10, 20)
    READOUT = "readout"  # owner -> a device that asked to read a picture out (claims 8, 9)


# --- field checks: each raises LocalProtocolError naming the field -------------


def _fail(cls: str, name: str, why: str) -> LocalProtocolError:
    return LocalProtocolError(f"{cls}.{name}: {why}", code="bad-field")


def check_id(cls: str, name: str, value: object) -> None:
    """An image or device id: 64 lowercase hex characters (a SHA-256)."""
    if not isinstance(value, str) or not _HEX64.match(value):
        raise _fail(cls, name, "must be 64 lowercase hex characters")


def check_int(cls: str, name: str, value: object, lo: int, hi: int) -> None:
    if type(value) is not int or not lo <= value <= hi:
        raise _fail(cls, name, f"must be an integer in [{lo}, {hi}]")


def check_opt_int(cls: str, name: str, value: object, lo: int, hi: int) -> None:
    if value is not None:
        check_int(cls, name, value, lo, hi)


def check_text(cls: str, name: str, value: object, limit: int) -> None:
    if not isinstance(value, str) or len(value) > limit:
        raise _fail(cls, name, f"must be text of at most {limit} characters")


def check_bytes(cls: str, name: str, value: object, lo: int, hi: int) -> None:
    # Plain bytes first: isinstance against the three-type union costs ~0.1 µs more.
    if type(value) is not bytes and not isinstance(value, bytes | bytearray | memoryview):
        raise _fail(cls, name, f"must be {lo} to {hi} bytes")
    if not lo <= len(value) <= hi:
        raise _fail(cls, name, f"must be {lo} to {hi} bytes")


def check_float(cls: str, name: str, value: object) -> None:
    if type(value) is not float or not math.isfinite(value):
        raise _fail(cls, name, "must be a finite float")


def check_bool(cls: str, name: str, value: object) -> None:
    if type(value) is not bool:
        raise _fail(cls, name, "must be a boolean")


def check_enum(cls: str, name: str, value: object, kind: type[enum.StrEnum]) -> None:
    if not isinstance(value, kind):
        raise _fail(cls, name, f"must be one of {[m.value for m in kind]}")


MetadataValue = str | int | float | bool | None


def check_metadata(cls: str, name: str, value: object) -> None:
    """A flat map of short text keys to scalars (EXIF fields, GPS as floats)."""
    # A dict is let through before the ABC check: isinstance(d, Mapping) costs 0.28 µs.
    if type(value) is not dict and not isinstance(value, Mapping):
        raise _fail(cls, name, f"must be a map of at most {Limits.MAX_METADATA_KEYS} entries")
    if len(value) > Limits.MAX_METADATA_KEYS:
        raise _fail(cls, name, f"must be a map of at most {Limits.MAX_METADATA_KEYS} entries")
    # Hot path (every thumbnail offer): no f-string unless a value is wrong, and the
    # limit read once (a class attribute is looked up afresh on each read).
    longest = Limits.MAX_METADATA_VALUE
    for key, item in value.items():
        if (type(key) is not str and not isinstance(key, str)) or not 0 < len(key) <= 64:
            raise _fail(cls, name, "keys must be text of 1 to 64 characters")
        kind = type(item)
        if kind is str:
            if len(item) > longest:
                check_text(cls, f"{name}[{key!r}]", item, longest)
        elif kind is float:
            if not math.isfinite(item):
                check_float(cls, f"{name}[{key!r}]", item)
        elif kind is int:
            if not -(2**63) <= item < 2**64:  # msgpack carries 64-bit integers only
                raise _fail(cls, name, f"value of {key!r} must fit in 64 bits")
        elif item is None or kind is bool:
            continue
        elif isinstance(item, str):
            check_text(cls, f"{name}[{key!r}]", item, longest)
        else:
            raise _fail(cls, name, f"value of {key!r} must be a scalar")


# --- the messages --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """Base of all messages; ``TAG`` is the wire type tag."""

    TAG: ClassVar[str] = ""

    def __post_init__(self) -> None:  # pragma: no cover - every subclass overrides
        pass


@dataclass(frozen=True, slots=True)
class Hello(Message):
    """First message each way: who I am and how much room I have."""

    TAG: ClassVar[str] = "hello"
    device_id: str
    name: str
    role: Role
    version: int
    capabilities: tuple[str, ...]
    capacity: int
    free: int

    def __post_init__(self) -> None:
        n = type(self).__name__
        check_id(n, "device_id", self.device_id)
        check_text(n, "name", self.name, Limits.MAX_NAME)
        check_enum(n, "role", self.role, Role)
        check_int(n, "version", self.version, 0, 2**16)
        if not isinstance(self.capabilities, tuple) or len(self.capabilities) > Limits.MAX_CAPABILITIES:
            raise _fail(n, "capabilities", f"must be a tuple of at most {Limits.MAX_CAPABILITIES}")
        for cap in self.capabilities:
            check_text(n, "capabilities[]", cap, 64)
        check_int(n, "capacity", self.capacity, 0, 2**62)
        check_int(n, "free", self.free, 0, 2**62)


@dataclass(frozen=True, slots=True)
class Catalog(Message):
    """Catalog exchange: per origin device, the highest sequence up to which I hold every thumbnail.

    The peer answers with only the thumbnails after those sequences (the delta).
    """

    TAG: ClassVar[str] = "catalog"
    seen: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = type(self).__name__
        if not isinstance(self.seen, Mapping) or len(self.seen) > Limits.MAX_ORIGINS:
            raise _fail(n, "seen", f"must be a map of at most {Limits.MAX_ORIGINS} origins")
        for origin, seq in self.seen.items():
            check_id(n, "seen key", origin)
            check_int(n, "seen value", seq, 0, 2**62)


@dataclass(frozen=True, slots=True)
class ThumbnailOffer(Message):
    """A picture's thumbnail and metadata, sent ahead of its original (FIG. 24)."""

    TAG: ClassVar[str] = "thumb"
    image_id: str
    origin: str  # device that captured or imported it
    seq: int  # per-origin sequence number, from 1
    name: str  # original file name, display only: never a path
    size: int  # bytes of the original
    mime: str
    capture_time: float | None  # seconds since the epoch, from EXIF when present
    metadata: Mapping[str, MetadataValue]
    thumbnail: bytes  # JPEG, may be empty when none could be made
    has_original: bool  # the sender can serve the original itself
    wrapped_key: bytes | None = None  # per-picture key wrapped for the receiver (FIG. 20)

    def __post_init__(self) -> None:
        # Every thumbnail frame runs this, so the usual shapes are tested in line first
        # (~0.5 µs less than eleven check calls; the metadata's own check, ~2 µs, stays).
        # Each test only admits what its check admits; anything else, even an unusual
        # value that is valid, goes the long way, which names the first bad field as before.
        when, wrapped_key = self.capture_time, self.wrapped_key
        seq, size, name, mime, thumbnail = self.seq, self.size, self.name, self.mime, self.thumbnail
        if (
            type(self.image_id) is str
            and _HEX64.match(self.image_id)
            and type(self.origin) is str
            and _HEX64.match(self.origin)
            and type(seq) is int
            and 1 <= seq <= 2**62
            and type(name) is str
            and len(name) <= Limits.MAX_NAME
            and type(size) is int
            and 0 <= size <= Limits.MAX_ORIGINAL
            and type(mime) is str
            and len(mime) <= 128
            and (when is None or (type(when) is float and -math.inf < when < math.inf))
            and type(thumbnail) is bytes
            and len(thumbnail) <= Limits.MAX_THUMBNAIL
            and type(self.has_original) is bool
            and (
                wrapped_key is None
                or (type(wrapped_key) is bytes and 0 < len(wrapped_key) <= Limits.MAX_WRAPPED_KEY)
            )
        ):
            check_metadata(type(self).__name__, "metadata", self.metadata)
            return
        n = type(self).__name__
        check_id(n, "image_id", self.image_id)
        check_id(n, "origin", self.origin)
        check_int(n, "seq", self.seq, 1, 2**62)
        check_text(n, "name", self.name, Limits.MAX_NAME)
        check_int(n, "size", self.size, 0, Limits.MAX_ORIGINAL)
        check_text(n, "mime", self.mime, 128)
        if self.capture_time is not None:
            check_float(n, "capture_time", self.capture_time)
        check_metadata(n, "metadata", self.metadata)
        check_bytes(n, "thumbnail", self.thumbnail, 0, Limits.MAX_THUMBNAIL)
        check_bool(n, "has_original", self.has_original)
        if self.wrapped_key is not None:
            check_bytes(n, "wrapped_key", self.wrapped_key, 1, Limits.MAX_WRAPPED_KEY)


@dataclass(frozen=True, slots=True)
class RequestOriginal(Message):
    """Receiver asks for an original, from ``offset`` (resume), maybe recompressed (FIG. 10, S63-S65).

    ``urgent`` requests jump ahead of background ones; ``max_side``/``quality``
    ask for a smaller copy instead of the original.
    """

    TAG: ClassVar[str] = "request"
    image_id: str
    urgent: bool = True
    offset: int = 0
    max_side: int | None = None
    quality: int | None = None

    def __post_init__(self) -> None:
        n = type(self).__name__
        check_id(n, "image_id", self.image_id)
        check_bool(n, "urgent", self.urgent)
        check_int(n, "offset", self.offset, 0, Limits.MAX_ORIGINAL)
        check_opt_int(n, "max_side", self.max_side, 16, Limits.MAX_SIDE)
        check_opt_int(n, "quality", self.quality, 1, 100)


@dataclass(frozen=True, slots=True)
class RefuseOriginal(Message):
    """Receiver does not need this original ("not necessary", FIG. 13B); it leaves the queue."""

    TAG: ClassVar[str] = "refuse"
    image_id: str

    def __post_init__(self) -> None:
        check_id(type(self).__name__, "image_id", self.image_id)


@dataclass(frozen=True, slots=True)
class OriginalHeader(Message):
    """Opens the stream of one original: what it is, why, and where it is going (claims 5, 15).

    ``digest`` is the SHA-256 of the bytes that follow (the image id itself,
    except for a smaller copy); ``offset`` is where the chunks resume.
    """

    TAG: ClassVar[str] = "header"
    image_id: str
    purpose: Purpose
    size: int
    digest: str
    offset: int
    destination: str  # device id the bytes are for
    owner: str  # device that owns the picture

    def __post_init__(self) -> None:
        n = type(self).__name__
        check_id(n, "image_id", self.image_id)
        check_enum(n, "purpose", self.purpose, Purpose)
        check_int(n, "size", self.size, 0, Limits.MAX_ORIGINAL)
        check_id(n, "digest", self.digest)
        check_int(n, "offset", self.offset, 0, self.size)
        check_id(n, "destination", self.destination)
        check_id(n, "owner", self.owner)


@dataclass(frozen=True, slots=True)
class Chunk(Message):
    """A slice of an original, at most ``Limits.MAX_CHUNK`` bytes, after its header."""

    TAG: ClassVar[str] = "chunk"
    image_id: str
    purpose: Purpose
    offset: int
    data: bytes

    def __post_init__(self) -> None:
        n = type(self).__name__
        check_id(n, "image_id", self.image_id)
        check_enum(n, "purpose", self.purpose, Purpose)
        check_int(n, "offset", self.offset, 0, Limits.MAX_ORIGINAL)
        check_bytes(n, "data", self.data, 1, Limits.MAX_CHUNK)


@dataclass(frozen=True, slots=True)
class OriginalComplete(Message):
    """All chunks sent; the receiver verifies ``digest`` before the original counts."""

    TAG: ClassVar[str] = "complete"
    image_id: str
    purpose: Purpose
    digest: str

    def __post_init__(self) -> None:
        n = type(self).__name__
        check_id(n, "image_id", self.image_id)
        check_enum(n, "purpose", self.purpose, Purpose)
        check_id(n, "digest", self.digest)


@dataclass(frozen=True, slots=True)
class TransferFailed(Message):
    """The sender cannot serve an original it was asked for (gone, holder offline, ...)."""

    TAG: ClassVar[str] = "failed"
    image_id: str
    purpose: Purpose
    reason: str

    def __post_init__(self) -> None:
        n = type(self).__name__
        check_id(n, "image_id", self.image_id)
        check_enum(n, "purpose", self.purpose, Purpose)
        check_text(n, "reason", self.reason, Limits.MAX_TEXT)


@dataclass(frozen=True, slots=True)
class DisperseRequest(Message):
    """Owner asks a peer to hold an original (claims 1, 11)."""

    TAG: ClassVar[str] = "disperse"
    image_id: str
    size: int
    owner: str

    def __post_init__(self) -> None:
        n = type(self).__name__
        check_id(n, "image_id", self.image_id)
        check_int(n, "size", self.size, 0, Limits.MAX_ORIGINAL)
        check_id(n, "owner", self.owner)


@dataclass(frozen=True, slots=True)
class DisperseAccept(Message):
    """Holder reserved ``reservation`` bytes; streaming may start at ``offset`` (claims 6, 16)."""

    TAG: ClassVar[str] = "accept"
    image_id: str
    reservation: int
    offset: int = 0

    def __post_init__(self) -> None:
        n = type(self).__name__
        check_id(n, "image_id", self.image_id)
        check_int(n, "reservation", self.reservation, 0, Limits.MAX_ORIGINAL)
        check_int(n, "offset", self.offset, 0, Limits.MAX_ORIGINAL)


@dataclass(frozen=True, slots=True)
class DisperseReject(Message):
    """Holder will not hold it, with a reason and its free room (claims 7, 17)."""

    TAG: ClassVar[str] = "reject"
    image_id: str
    reason: str
    free: int

    def __post_init__(self) -> None:
        n = type(self).__name__
        check_id(n, "image_id", self.image_id)
        check_text(n, "reason", self.reason, Limits.MAX_TEXT)
        check_int(n, "free", self.free, 0, 2**62)


@dataclass(frozen=True, slots=True)
class Stored(Message):
    """Holder confirms the original is durable and hash-verified on its card."""

    TAG: ClassVar[str] = "stored"
    image_id: str
    digest: str

    def __post_init__(self) -> None:
        n = type(self).__name__
        check_id(n, "image_id", self.image_id)
        check_id(n, "digest", self.digest)


@dataclass(frozen=True, slots=True)
class Collect(Message):
    """Owner asks a holder to send a held original back from ``offset`` (claims 10, 20)."""

    TAG: ClassVar[str] = "collect"
    image_id: str
    offset: int = 0

    def __post_init__(self) -> None:
        n = type(self).__name__
        check_id(n, "image_id", self.image_id)
        check_int(n, "offset", self.offset, 0, Limits.MAX_ORIGINAL)


@dataclass(frozen=True, slots=True)
class ReadOut(Message):
    """Any device asks the owner for a picture's original, wherever it is (claims 8, 9, 18, 19)."""

    TAG: ClassVar[str] = "readout"
    image_id: str
    offset: int = 0

    def __post_init__(self) -> None:
        n = type(self).__name__
        check_id(n, "image_id", self.image_id)
        check_int(n, "offset", self.offset, 0, Limits.MAX_ORIGINAL)


@dataclass(frozen=True, slots=True)
class Release(Message):
    """Owner no longer needs the holder's copy; the holder deletes it and frees the room."""

    TAG: ClassVar[str] = "release"
    image_id: str

    def __post_init__(self) -> None:
        check_id(type(self).__name__, "image_id", self.image_id)


@dataclass(frozen=True, slots=True)
class Ping(Message):
    """Keepalive; answered by a Pong with the same nonce."""

    TAG: ClassVar[str] = "ping"
    nonce: int

    def __post_init__(self) -> None:
        check_int(type(self).__name__, "nonce", self.nonce, 0, 2**63 - 1)


@dataclass(frozen=True, slots=True)
class Pong(Message):
    TAG: ClassVar[str] = "pong"
    nonce: int

    def __post_init__(self) -> None:
        check_int(type(self).__name__, "nonce", self.nonce, 0, 2**63 - 1)


@dataclass(frozen=True, slots=True)
class Goodbye(Message):
    """Orderly close, with a reason for the peer's log."""

    TAG: ClassVar[str] = "bye"
    reason: str

    def __post_init__(self) -> None:
        check_text(type(self).__name__, "reason", self.reason, Limits.MAX_TEXT)


@dataclass(frozen=True, slots=True)
class Error(Message):
    """The sender saw a protocol error and is closing; ``code`` is machine-readable."""

    TAG: ClassVar[str] = "error"
    code: str
    message: str

    def __post_init__(self) -> None:
        n = type(self).__name__
        check_text(n, "code", self.code, 64)
        check_text(n, "message", self.message, Limits.MAX_TEXT)


MESSAGE_TYPES: Final[tuple[type[Message], ...]] = (
    Hello,
    Catalog,
    ThumbnailOffer,
    RequestOriginal,
    RefuseOriginal,
    OriginalHeader,
    Chunk,
    OriginalComplete,
    TransferFailed,
    DisperseRequest,
    DisperseAccept,
    DisperseReject,
    Stored,
    Collect,
    ReadOut,
    Release,
    Ping,
    Pong,
    Goodbye,
    Error,
)

BY_TAG: Final[Mapping[str, type[Message]]] = {cls.TAG: cls for cls in MESSAGE_TYPES}


def describe(msg: Message) -> dict[str, Any]:
    """A short, log-friendly view of a message (payload bytes replaced by their length)."""
    out: dict[str, Any] = {"type": msg.TAG}
    for f in dataclasses.fields(msg):  # __dataclass_fields__ also lists the TAG ClassVar
        name, value = f.name, getattr(msg, f.name)
        out[name] = f"<{len(value)} bytes>" if isinstance(value, bytes | bytearray) else value
    return out
