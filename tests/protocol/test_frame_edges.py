"""FrameEdges: where frames end in a byte stream (the runtime calls the node once a frame is whole,
not per TLS record)."""

from __future__ import annotations

import random

from protocol.codec import PREFIX, FrameEdges
from protocol.messages import Limits


def frame(length: int) -> bytes:
    return length.to_bytes(PREFIX, "big") + b"x" * length


def test_an_end_is_told_in_the_slice_where_a_frame_ends_however_the_stream_is_cut() -> None:
    frames = [frame(n) for n in (0, 10, 3, 200_000, 1, 70_000)]
    stream = b"".join(frames)
    ends, at = set(), 0
    for f in frames:
        at += len(f)
        ends.add(at)
    rng = random.Random(4)
    for _ in range(50):
        edges, pos = FrameEdges(), 0
        while pos < len(stream):
            step = rng.choice((1, 2, 3, 5, 16_384, 65_536))
            piece = stream[pos : pos + step]
            expected = any(pos < end <= pos + len(piece) for end in ends)
            assert edges.feed(piece) is expected, (pos, step)
            pos += len(piece)


def test_a_length_over_the_limit_counts_as_an_end_so_the_node_refuses_it_at_once() -> None:
    assert FrameEdges().feed((Limits.MAX_FRAME + 1).to_bytes(PREFIX, "big"))
    assert not FrameEdges().feed(Limits.MAX_FRAME.to_bytes(PREFIX, "big"))
