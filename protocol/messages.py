"""Every message two cammesh devices can exchange, one frozen dataclass each.

Each field's type declares its limits (``Annotated[int, Meta(ge=1)]``); messages
check themselves against them on construction and raise ``LocalProtocolError``
for bad field values, and the codec has msgspec check frames off the wire against
the same declarations (protocol/fields.py).  Every length has a limit (``Limits``).

Figures and claims cited are those of the seed patents (DESIGN.md).
"""

from __future__ import annotations

import dataclasses
import enum
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Final

from msgspec import Meta

from protocol.errors import LocalProtocolError
from protocol.fields import Check, checker

PROTOCOL_VERSION: Final = 1


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
    MAX_STRIP_FRAMES: Final = 48  # a movie's strip (FIG. 15A), poster first
    MAX_STRIP_JPEG: Final = 64 * 1024  # one strip frame (160 px: 4-8 KiB)
    MAX_STRIP_BYTES: Final = 640 * 1024  # a whole strip, inside one frame of MAX_FRAME
    MAX_CAPTION: Final = 2000  # an editor's caption, in characters (storage.marks.MAX_TEXT)
    MAX_MARK_TEXT: Final = 256  # a headline, credit or keyword (storage.marks.MAX_SHORT_TEXT)
    MAX_KEYWORDS: Final = 64  # keywords on one picture (storage.marks.MAX_KEYWORDS)
    MARK_DIGEST: Final = 256 * 8  # a MarksDigest: 256 buckets (an id's first byte) of 8 bytes
    MAX_WANTED_STRIPS: Final = 48  # movies one WantStrips names (more: another message)


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


# --- field types: each limit declared once, checked here and on the wire -------

# Read by protocol.fields for messages built here and by msgspec for frames off the
# wire (protocol/codec.py), so both judge a field by the same declaration.
Hex64 = Annotated[str, Meta(pattern=r"^[0-9a-f]{64}\Z", description="64 lowercase hex characters")]
Offset = Annotated[int, Meta(ge=0, le=Limits.MAX_ORIGINAL)]  # also a size
Room = Annotated[int, Meta(ge=0, le=2**62)]  # bytes of capacity or free room
Nonce = Annotated[int, Meta(ge=0, le=2**63 - 1)]
Reason = Annotated[str, Meta(max_length=Limits.MAX_TEXT)]
Finite = Annotated[float, Meta(ge=-sys.float_info.max, le=sys.float_info.max)]
ShortText = Annotated[str, Meta(max_length=64)]

MetadataValue = str | int | float | bool | None
MetadataItem = (
    Annotated[str, Meta(max_length=Limits.MAX_METADATA_VALUE)]
    | Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]  # a signed 64-bit integer, as msgspec checks
    | Finite
    | bool
    | None
)
# A flat map of short text keys to scalars (EXIF fields, GPS as floats).
Metadata = Annotated[
    Mapping[Annotated[str, Meta(min_length=1, max_length=64)], MetadataItem],
    Meta(max_length=Limits.MAX_METADATA_KEYS),
]


def _fail(cls: str, name: str, why: str) -> LocalProtocolError:
    return LocalProtocolError(f"{cls}.{name}: {why}", code="bad-field")


def check_text(cls: str, name: str, value: object, limit: int) -> None:
    if not isinstance(value, str) or len(value) > limit:
        raise _fail(cls, name, f"must be text of at most {limit} characters")


_METADATA_CHECK: Final = checker(Metadata)


def check_metadata(cls: str, name: str, value: object) -> None:
    """Raise LocalProtocolError unless ``value`` is a thumbnail offer's metadata."""
    if (why := _METADATA_CHECK(value)) is not None:
        raise _fail(cls, name, why)


_FIELD_CHECKS: dict[type, tuple[tuple[str, Check], ...]] = {}


def field_types(cls: type) -> dict[str, Any]:
    """Each field of message class ``cls`` and its type, limits included."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _field_checks(cls: type) -> tuple[tuple[str, Check], ...]:
    checks = _FIELD_CHECKS.get(cls)
    if checks is None:
        checks = _FIELD_CHECKS[cls] = tuple(
            (name, checker(hint)) for name, hint in field_types(cls).items()
        )
    return checks


# --- the messages --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """Base of all messages; ``TAG`` is the wire type tag."""

    TAG: ClassVar[str] = ""

    def __post_init__(self) -> None:
        cls = type(self)
        for name, check in _field_checks(cls):
            if (why := check(getattr(self, name))) is not None:
                raise _fail(cls.__name__, name, why)
        self.check_relations()

    def check_relations(self) -> None:
        """Checks between fields, after each field's own; the codec runs them on frames too."""


@dataclass(frozen=True, slots=True)
class Hello(Message):
    """First message each way: who I am and how much room I have."""

    TAG: ClassVar[str] = "hello"
    device_id: Hex64
    name: Annotated[str, Meta(max_length=Limits.MAX_NAME)]
    role: Role
    version: Annotated[int, Meta(ge=0, le=2**16)]
    capabilities: Annotated[tuple[ShortText, ...], Meta(max_length=Limits.MAX_CAPABILITIES)]
    capacity: Room
    free: Room


@dataclass(frozen=True, slots=True)
class Catalog(Message):
    """Catalog exchange: per origin device, the highest sequence up to which I hold every thumbnail.

    The peer answers with only the thumbnails after those sequences (the delta).
    """

    TAG: ClassVar[str] = "catalog"
    seen: Annotated[Mapping[Hex64, Room], Meta(max_length=Limits.MAX_ORIGINS)] = field(
        default_factory=dict
    )


@dataclass(frozen=True, slots=True)
class ThumbnailOffer(Message):
    """A picture's thumbnail and metadata, sent ahead of its original (FIG. 24)."""

    TAG: ClassVar[str] = "thumb"
    image_id: Hex64
    origin: Hex64  # device that captured or imported it
    seq: Annotated[int, Meta(ge=1, le=2**62)]  # per-origin sequence number, from 1
    name: Annotated[
        str, Meta(max_length=Limits.MAX_NAME)
    ]  # original file name, display only: never a path
    size: Offset  # bytes of the original
    mime: Annotated[str, Meta(max_length=128)]
    capture_time: Finite | None  # seconds since the epoch, from EXIF when present
    metadata: Metadata
    thumbnail: Annotated[
        bytes, Meta(max_length=Limits.MAX_THUMBNAIL)
    ]  # JPEG, may be empty when none could be made
    has_original: bool  # the sender can serve the original itself
    wrapped_key: Annotated[bytes, Meta(min_length=1, max_length=Limits.MAX_WRAPPED_KEY)] | None = (
        None  # per-picture key wrapped for the receiver (FIG. 20)
    )


STRIP_KINDS: Final = frozenset({"interval", "scene"})


@dataclass(frozen=True, slots=True)
class Strip(Message):
    """A movie's strip of keyframe thumbnails (FIG. 15A), en bloc, right behind its offer.

    Frame k is ``times[k]`` seconds into the movie, playable from byte ``offsets[k]`` of the
    original (None: the container does not say), chosen as ``kinds[k]`` ("interval" or
    "scene"); ``jpegs[k]`` is its picture.  The first frame is the poster.  Sent only to a
    peer whose Hello names the ``strip`` capability, ahead of any byte of the movie.
    """

    TAG: ClassVar[str] = "strip"
    image_id: Hex64
    times: Annotated[
        tuple[Annotated[float, Meta(ge=0, le=sys.float_info.max)], ...],
        Meta(max_length=Limits.MAX_STRIP_FRAMES),
    ]
    offsets: Annotated[tuple[Offset | None, ...], Meta(max_length=Limits.MAX_STRIP_FRAMES)]
    kinds: Annotated[tuple[Annotated[str, Meta(max_length=16)], ...], Meta(max_length=Limits.MAX_STRIP_FRAMES)]
    jpegs: Annotated[
        tuple[Annotated[bytes, Meta(min_length=1, max_length=Limits.MAX_STRIP_JPEG)], ...],
        Meta(max_length=Limits.MAX_STRIP_FRAMES),
    ]

    def check_relations(self) -> None:
        name = type(self).__name__
        n = len(self.times)
        if not n or not len(self.offsets) == len(self.kinds) == len(self.jpegs) == n:
            raise _fail(name, "times", "times, offsets, kinds and jpegs must be as long, at least 1")
        if any(later < earlier for earlier, later in zip(self.times, self.times[1:], strict=False)):
            raise _fail(name, "times", "must be in time order")
        if not STRIP_KINDS.issuperset(self.kinds):
            raise _fail(name, "kinds", f"each must be one of {sorted(STRIP_KINDS)}")
        if sum(len(j) for j in self.jpegs) > Limits.MAX_STRIP_BYTES:
            raise _fail(name, "jpegs", f"must hold at most {Limits.MAX_STRIP_BYTES} bytes in all")


# The editor's marks (issue 19): what each field may hold (storage.marks checks the text).
MARK_FIELDS: Final = ("rating", "color", "tagged", "caption", "headline", "credit", "keywords")
_MARK_KINDS: Final[Mapping[str, tuple[type, ...]]] = {
    "rating": (int, type(None)), "color": (int, type(None)), "tagged": (bool,),
    "caption": (str,), "headline": (str,), "credit": (str,), "keywords": (tuple,),
}
_MARK_RANGES: Final[Mapping[str, range]] = {"rating": range(0, 6), "color": range(1, 9)}
Keyword = Annotated[str, Meta(min_length=1, max_length=Limits.MAX_MARK_TEXT)]
MarkItem = (Annotated[str, Meta(max_length=Limits.MAX_CAPTION)] | Annotated[int, Meta(ge=0, le=8)]
            | bool | Annotated[tuple[Keyword, ...], Meta(max_length=Limits.MAX_KEYWORDS)] | None)
_PER_FIELD: Final = Meta(max_length=len(MARK_FIELDS))
DIGEST_BYTES: Final = Limits.MARK_DIGEST


@dataclass(frozen=True, slots=True)
class Marked(Message):
    """An editor's marks on one picture: field k is ``fields[k]`` (of ``MARK_FIELDS``, once),
    set to ``values[k]`` at ``times[k]`` by ``devices[k]`` (protocol/marks.py)."""

    TAG: ClassVar[str] = "marked"
    image_id: Hex64
    fields: Annotated[tuple[Annotated[str, Meta(max_length=16)], ...], _PER_FIELD]
    values: Annotated[tuple[MarkItem, ...], _PER_FIELD]
    times: Annotated[tuple[Finite, ...], _PER_FIELD]
    devices: Annotated[tuple[Hex64, ...], _PER_FIELD]

    def check_relations(self) -> None:
        name, n = type(self).__name__, len(self.fields)
        if not n or not len(self.values) == len(self.times) == len(self.devices) == n:
            raise _fail(name, "fields", "fields, values, times and devices must be as long, at least 1")
        if len(set(self.fields)) != n or not set(self.fields) <= set(MARK_FIELDS):
            raise _fail(name, "fields", f"each must be one of {list(MARK_FIELDS)}, once")
        for mark, value in zip(self.fields, self.values, strict=True):
            allowed = _MARK_RANGES.get(mark)
            if type(value) not in _MARK_KINDS[mark] or (
                allowed is not None and value is not None and value not in allowed
            ) or (mark in ("headline", "credit") and len(value) > Limits.MAX_MARK_TEXT):  # type: ignore[arg-type]
                raise _fail(name, "values", f"{value!r} is not a {mark} mark")


@dataclass(frozen=True, slots=True)
class MarksDigest(Message):
    """The marks I hold: per bucket of image ids (their first byte) a hash of its stamped
    marks, or no bytes when I hold none (protocol/marks.py)."""

    TAG: ClassVar[str] = "marks"
    buckets: Annotated[bytes, Meta(max_length=DIGEST_BYTES)]

    def check_relations(self) -> None:
        if len(self.buckets) not in (0, DIGEST_BYTES):
            raise _fail(type(self).__name__, "buckets", f"must be 0 or {DIGEST_BYTES} bytes")


@dataclass(frozen=True, slots=True)
class WantStrips(Message):
    """The movies whose strip never reached me (a link broke between offer and strip): send
    me each one you keep.  Sent only to a peer whose Hello names ``want-strips``."""

    TAG: ClassVar[str] = "want-strips"
    image_ids: Annotated[tuple[Hex64, ...], Meta(max_length=Limits.MAX_WANTED_STRIPS)]

    def check_relations(self) -> None:
        if not self.image_ids:
            raise _fail(type(self).__name__, "image_ids", "must name at least 1 movie")


@dataclass(frozen=True, slots=True)
class RequestOriginal(Message):
    """Receiver asks for an original, from ``offset`` (resume), maybe recompressed (FIG. 10, S63-S65).

    ``urgent`` requests jump ahead of background ones; ``max_side``/``quality``
    ask for a smaller copy instead of the original.
    """

    TAG: ClassVar[str] = "request"
    image_id: Hex64
    urgent: bool = True
    offset: Offset = 0
    max_side: Annotated[int, Meta(ge=16, le=Limits.MAX_SIDE)] | None = None
    quality: Annotated[int, Meta(ge=1, le=100)] | None = None


@dataclass(frozen=True, slots=True)
class RefuseOriginal(Message):
    """Receiver does not need this original ("not necessary", FIG. 13B); it leaves the queue."""

    TAG: ClassVar[str] = "refuse"
    image_id: Hex64


@dataclass(frozen=True, slots=True)
class OriginalHeader(Message):
    """Opens the stream of one original: what it is, why, and where it is going (claims 5, 15).

    ``digest`` is the SHA-256 of the bytes that follow (the image id itself,
    except for a smaller copy); ``offset`` is where the chunks resume.
    """

    TAG: ClassVar[str] = "header"
    image_id: Hex64
    purpose: Purpose
    size: Offset
    digest: Hex64
    offset: Offset
    destination: Hex64  # device id the bytes are for
    owner: Hex64  # device that owns the picture

    def check_relations(self) -> None:
        if self.offset > self.size:
            raise _fail(type(self).__name__, "offset", f"must be an integer in [0, {self.size}]")


@dataclass(frozen=True, slots=True)
class Chunk(Message):
    """A slice of an original, at most ``Limits.MAX_CHUNK`` bytes, after its header."""

    TAG: ClassVar[str] = "chunk"
    image_id: Hex64
    purpose: Purpose
    offset: Offset
    data: Annotated[bytes, Meta(min_length=1, max_length=Limits.MAX_CHUNK)]


@dataclass(frozen=True, slots=True)
class OriginalComplete(Message):
    """All chunks sent; the receiver verifies ``digest`` before the original counts."""

    TAG: ClassVar[str] = "complete"
    image_id: Hex64
    purpose: Purpose
    digest: Hex64


@dataclass(frozen=True, slots=True)
class TransferFailed(Message):
    """The sender cannot serve an original it was asked for (gone, holder offline, ...)."""

    TAG: ClassVar[str] = "failed"
    image_id: Hex64
    purpose: Purpose
    reason: Reason


@dataclass(frozen=True, slots=True)
class DisperseRequest(Message):
    """Owner asks a peer to hold an original (claims 1, 11)."""

    TAG: ClassVar[str] = "disperse"
    image_id: Hex64
    size: Offset
    owner: Hex64


@dataclass(frozen=True, slots=True)
class DisperseAccept(Message):
    """Holder reserved ``reservation`` bytes; streaming may start at ``offset`` (claims 6, 16)."""

    TAG: ClassVar[str] = "accept"
    image_id: Hex64
    reservation: Offset
    offset: Offset = 0


@dataclass(frozen=True, slots=True)
class DisperseReject(Message):
    """Holder will not hold it, with a reason and its free room (claims 7, 17)."""

    TAG: ClassVar[str] = "reject"
    image_id: Hex64
    reason: Reason
    free: Room


@dataclass(frozen=True, slots=True)
class Stored(Message):
    """Holder confirms the original is durable and hash-verified on its card."""

    TAG: ClassVar[str] = "stored"
    image_id: Hex64
    digest: Hex64


@dataclass(frozen=True, slots=True)
class Collect(Message):
    """Owner asks a holder to send a held original back from ``offset`` (claims 10, 20)."""

    TAG: ClassVar[str] = "collect"
    image_id: Hex64
    offset: Offset = 0


@dataclass(frozen=True, slots=True)
class ReadOut(Message):
    """Any device asks the owner for a picture's original, wherever it is (claims 8, 9, 18, 19)."""

    TAG: ClassVar[str] = "readout"
    image_id: Hex64
    offset: Offset = 0


@dataclass(frozen=True, slots=True)
class Release(Message):
    """Owner no longer needs the holder's copy; the holder deletes it and frees the room."""

    TAG: ClassVar[str] = "release"
    image_id: Hex64


@dataclass(frozen=True, slots=True)
class Ping(Message):
    """Keepalive; answered by a Pong with the same nonce."""

    TAG: ClassVar[str] = "ping"
    nonce: Nonce


@dataclass(frozen=True, slots=True)
class Pong(Message):
    TAG: ClassVar[str] = "pong"
    nonce: Nonce


@dataclass(frozen=True, slots=True)
class Goodbye(Message):
    """Orderly close, with a reason for the peer's log."""

    TAG: ClassVar[str] = "bye"
    reason: Reason


@dataclass(frozen=True, slots=True)
class Error(Message):
    """The sender saw a protocol error and is closing; ``code`` is machine-readable."""

    TAG: ClassVar[str] = "error"
    code: ShortText
    message: Reason


MESSAGE_TYPES: Final[tuple[type[Message], ...]] = (
    Hello, Catalog, ThumbnailOffer, RequestOriginal, RefuseOriginal, OriginalHeader, Chunk,
    OriginalComplete, TransferFailed, DisperseRequest, DisperseAccept, DisperseReject, Stored,
    Collect, ReadOut, Release, Ping, Pong, Goodbye, Error, Strip, Marked, MarksDigest, WantStrips,
)

BY_TAG: Final[Mapping[str, type[Message]]] = {cls.TAG: cls for cls in MESSAGE_TYPES}


def describe(msg: Message) -> dict[str, Any]:
    """A short, log-friendly view of a message (payload bytes replaced by their length)."""
    out: dict[str, Any] = {"type": msg.TAG}
    for f in dataclasses.fields(msg):  # __dataclass_fields__ also lists the TAG ClassVar
        name, value = f.name, getattr(msg, f.name)
        out[name] = f"<{len(value)} bytes>" if isinstance(value, bytes | bytearray) else value
    return out
