"""Hypothesis strategies for every wire message, built field by field from the limits."""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import strategies as st

from protocol.messages import (
    MARK_FIELDS,
    MESSAGE_TYPES,
    Catalog,
    Chunk,
    Collect,
    DisperseAccept,
    DisperseReject,
    DisperseRequest,
    Error,
    Goodbye,
    Hello,
    Limits,
    Marked,
    MarksDigest,
    Message,
    OriginalComplete,
    OriginalHeader,
    Ping,
    Pong,
    Purpose,
    ReadOut,
    RefuseOriginal,
    Release,
    RequestOriginal,
    Role,
    Stored,
    Strip,
    ThumbnailOffer,
    TransferFailed,
    WantStrips,
)

ids = st.binary(min_size=32, max_size=32).map(bytes.hex)
sizes = st.integers(0, Limits.MAX_ORIGINAL)
offsets = st.integers(0, Limits.MAX_ORIGINAL)
big = st.integers(0, 2**62)
finite = st.floats(allow_nan=False, allow_infinity=False)
purposes = st.sampled_from(Purpose)
# Small payloads keep the suite fast; test_codec checks the largest sizes on their own.
payloads = st.binary(min_size=1, max_size=2048)


def text(limit: int) -> st.SearchStrategy[str]:
    return st.text(max_size=min(limit, 80)) | st.text(min_size=limit, max_size=limit)


# Metadata integers are signed 64-bit (msgpack could carry unsigned too); values are EXIF numbers.
metadata_values = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | finite
    | text(Limits.MAX_METADATA_VALUE)
)
metadata = st.dictionaries(
    st.text(min_size=1, max_size=64), metadata_values, max_size=Limits.MAX_METADATA_KEYS
)

def _strip(n: int) -> st.SearchStrategy[Message]:
    return st.builds(
        Strip,
        image_id=ids,
        times=st.lists(st.floats(0, 1e6), min_size=n, max_size=n).map(lambda t: tuple(sorted(t))),
        offsets=st.lists(st.none() | offsets, min_size=n, max_size=n).map(tuple),
        kinds=st.lists(st.sampled_from(["interval", "scene"]), min_size=n, max_size=n).map(tuple),
        jpegs=st.lists(st.binary(min_size=1, max_size=512), min_size=n, max_size=n).map(tuple),
    )


strips = st.integers(1, 6).flatmap(_strip)

keywords = st.lists(st.text(min_size=1, max_size=Limits.MAX_MARK_TEXT), max_size=8).map(tuple)
MARK_VALUES: Mapping[str, st.SearchStrategy[object]] = {
    "rating": st.none() | st.integers(0, 5),
    "color": st.none() | st.integers(1, 8),
    "tagged": st.booleans(),
    "caption": text(Limits.MAX_CAPTION),
    "headline": text(Limits.MAX_MARK_TEXT),
    "credit": text(Limits.MAX_MARK_TEXT),
    "keywords": keywords | st.just(("k" * Limits.MAX_MARK_TEXT,) * Limits.MAX_KEYWORDS),
}


def _marked(names: list[str]) -> st.SearchStrategy[Message]:
    n = len(names)
    return st.builds(
        Marked,
        image_id=ids,
        fields=st.just(tuple(names)),
        values=st.tuples(*(MARK_VALUES[name] for name in names)),
        times=st.lists(finite, min_size=n, max_size=n).map(tuple),
        devices=st.lists(ids, min_size=n, max_size=n).map(tuple),
    )


marks = st.lists(st.sampled_from(MARK_FIELDS), min_size=1, unique=True).flatmap(_marked)
marks_digests = st.builds(
    MarksDigest,
    buckets=st.just(b"")
    | st.binary(min_size=Limits.MARK_DIGEST,
                max_size=Limits.MARK_DIGEST),
)

hellos = st.builds(
    Hello,
    device_id=ids,
    name=text(Limits.MAX_NAME),
    role=st.sampled_from(Role),
    version=st.integers(0, 2**16),
    capabilities=st.lists(st.text(max_size=64), max_size=Limits.MAX_CAPABILITIES).map(tuple),
    capacity=big,
    free=big,
)

STRATEGIES: Mapping[type[Message], st.SearchStrategy[Message]] = {
    Hello: hellos,
    Catalog: st.builds(Catalog, seen=st.dictionaries(ids, big, max_size=20)),
    ThumbnailOffer: st.builds(
        ThumbnailOffer,
        image_id=ids,
        origin=ids,
        seq=st.integers(1, 2**62),
        name=text(Limits.MAX_NAME),
        size=sizes,
        mime=text(128),
        capture_time=st.none() | finite,
        metadata=metadata,
        thumbnail=st.binary(max_size=4096),
        has_original=st.booleans(),
        wrapped_key=st.none() | st.binary(min_size=1, max_size=Limits.MAX_WRAPPED_KEY),
    ),
    RequestOriginal: st.builds(
        RequestOriginal,
        image_id=ids,
        urgent=st.booleans(),
        offset=offsets,
        max_side=st.none() | st.integers(16, Limits.MAX_SIDE),
        quality=st.none() | st.integers(1, 100),
    ),
    RefuseOriginal: st.builds(RefuseOriginal, image_id=ids),
    OriginalHeader: sizes.flatmap(
        lambda size: st.builds(
            OriginalHeader,
            image_id=ids,
            purpose=purposes,
            size=st.just(size),
            digest=ids,
            offset=st.integers(0, size),
            destination=ids,
            owner=ids,
        )
    ),
    Chunk: st.builds(Chunk, image_id=ids, purpose=purposes, offset=offsets, data=payloads),
    OriginalComplete: st.builds(OriginalComplete, image_id=ids, purpose=purposes, digest=ids),
    TransferFailed: st.builds(
        TransferFailed, image_id=ids, purpose=purposes, reason=text(Limits.MAX_TEXT)
    ),
    DisperseRequest: st.builds(DisperseRequest, image_id=ids, size=sizes, owner=ids),
    DisperseAccept: st.builds(DisperseAccept, image_id=ids, reservation=sizes, offset=offsets),
    DisperseReject: st.builds(DisperseReject, image_id=ids, reason=text(Limits.MAX_TEXT), free=big),
    Stored: st.builds(Stored, image_id=ids, digest=ids),
    Collect: st.builds(Collect, image_id=ids, offset=offsets),
    ReadOut: st.builds(ReadOut, image_id=ids, offset=offsets),
    Release: st.builds(Release, image_id=ids),
    Ping: st.builds(Ping, nonce=st.integers(0, 2**63 - 1)),
    Pong: st.builds(Pong, nonce=st.integers(0, 2**63 - 1)),
    Goodbye: st.builds(Goodbye, reason=text(Limits.MAX_TEXT)),
    Error: st.builds(Error, code=text(64), message=text(Limits.MAX_TEXT)),
    Strip: strips,
    Marked: marks,
    MarksDigest: marks_digests,
    WantStrips: st.builds(WantStrips, image_ids=st.lists(ids, min_size=1, max_size=4).map(tuple)),
}

assert set(STRATEGIES) == set(MESSAGE_TYPES), "every message type needs a strategy"

messages: st.SearchStrategy[Message] = st.one_of(*STRATEGIES.values())


def _containers(inner: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)


# Anything msgpack can carry: what a hostile peer may put in any field.
wire_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=40)
    | st.binary(max_size=40),
    _containers,
    max_leaves=8,
)
