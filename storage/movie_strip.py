"""Which keyframes of a movie to decode, and which become its strip (FIG. 15-16).

The walk demuxes keyframe packets only and decodes as few of them as it can, one at a time to
a small picture (a 4K I-frame costs about a tenth of a second; nothing else comes close):

- each interval slot's keyframe (the first at or after each multiple of ``every_s``), and a
  probe at least every ``probe_s`` seconds; the others are held undecoded;
- when two probes' tiny images (32x18 RGB, mean absolute difference 0..1) differ by more than
  ``scene_threshold``, the held keyframes between them are searched for the first of the new
  scene: first the one the packets point at (a keyframe off the GOP's cadence, as an encoder
  places at a cut, or whose size jumps), checked against the keyframe before it unless the
  encoder placed it off the cadence, and only if that fails a bisection.  A cut costs one
  decode (two for a keyframe on the cadence) instead of the whole gap.
"""

from __future__ import annotations

import io
import itertools
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from protocol.store import StripFrame as StripFrame  # sent by the protocol as kept here
from storage.errors import MovieUnusable

if TYPE_CHECKING:  # Pillow loads when a movie is read, not with the card at start-up
    from PIL import Image

STRIP_SIDE: Final = 160  # long side of a strip frame; the poster is also made at POSTER_SIDE
POSTER_SIDE: Final = 320
EVERY_S: Final = 10.0
MAX_FRAMES: Final = 48  # 48 strip frames of ~4-8 KiB travel in one frame of the codec (1 MiB)
MAX_STRIP_BYTES: Final = 640 * 1024  # with the poster (<= 256 KiB), inside that 1 MiB frame
SCENE_THRESHOLD: Final = 0.15
PROBE_S: Final = 10.0  # keyframes closer than this to the last probe are decoded only for a cut
DEADLINE_S: Final = 20.0
MAX_PACKETS: Final = 200_000  # keyframe packets demuxed (a 10-hour all-intra movie at 5 fps)
MAX_PROBES: Final = 2_000  # keyframes decoded to tiny images
MAX_HELD: Final = 512  # keyframe packets held undecoded between two probes
MAX_HELD_BYTES: Final = 64 * 1024 * 1024  # ... and their bytes (all-intra 4K is ~2 MB a frame)
QUALITY: Final = 80
_TINY: Final = (32, 18)


@dataclass(frozen=True, slots=True)
class StripSettings:
    every_s: float = EVERY_S
    max_frames: int = MAX_FRAMES
    scene_threshold: float = SCENE_THRESHOLD
    deadline_s: float = DEADLINE_S
    max_packets: int = MAX_PACKETS
    probe_s: float = PROBE_S


def walk_strip(
    container: Any, settings: StripSettings, deadline: float
) -> tuple[list[tuple[StripFrame, bytes]], str | None, int]:
    """(strip frame, poster-sized JPEG) pairs in time order, why the walk stopped early, and
    how many keyframes it decoded."""
    stream = container.streams.video[0]
    # Every packet is demuxed (not decoded): told to discard non-keyframes, the MP4 demuxer
    # gives keyframes of a movie with B-frames the composition offsets of other samples
    # (times off by a few frames).  Reading them costs ~50 ms for 30 s of 4K at 20 Mbit/s.
    context = stream.codec_context
    context.skip_frame = "NONKEY"
    # Deblocking (and HEVC's SAO) is invisible at thumbnail size and costs about a tenth of a
    # keyframe's decode.  H.264/H.265 decoders cannot decode at a reduced size (no lowres),
    # and frame threads gain nothing on one frame at a time: slices (HEVC's wavefronts) can.
    context.options = {"skip_loop_filter": "all"}
    context.thread_type = "SLICE"
    walk = _Walk(context, stream)
    duration = float(stream.duration * stream.time_base) if stream.duration else 0.0
    if not duration and container.duration:
        duration = float(container.duration) / 1_000_000
    every = max(settings.every_s, duration / max(1, settings.max_frames // 2))
    state = _Probing(walk, settings)
    packets, reason = 0, None
    try:
        for packet in container.demux(stream):
            packets += 1
            if packets > settings.max_packets:
                reason = f"stopped after {settings.max_packets} packets"
                break
            if time.monotonic() > deadline:
                reason = f"stopped at the {settings.deadline_s:g} s deadline"
                break
            if walk.decodes >= MAX_PROBES:
                reason = f"stopped after {MAX_PROBES} keyframes"
                break
            if packet.size and packet.pts is not None and packet.is_keyframe:
                pos = packet.pos if packet.pos >= 0 else None
                state.offer(_Key(packet, walk.time_of(packet.pts), pos, packet.size), every)
        else:
            state.finish()  # the last keyframes held: a cut near the end is still found
    except av_errors() as exc:
        reason = f"the movie ends in damage ({describe(exc)})"
    if not walk.chosen:
        raise MovieUnusable(reason or walk.damage or "no keyframe could be decoded")
    return _trimmed(walk.chosen, settings), reason or walk.damage, walk.decodes


class _Probing:
    """Which keyframes to decode: one per ``probe_s``, each interval slot's, and, between two
    probes that differ, those the search for each cut needs."""

    def __init__(self, walk: _Walk, settings: StripSettings) -> None:
        self.walk, self.settings = walk, settings
        self.previous: _Seen | None = None
        self.held: list[_Key] = []
        self.held_bytes = 0
        self.next_slot = 0.0

    def offer(self, key: _Key, every: float) -> None:
        slot = key.at >= self.next_slot - 1e-6
        previous = self.previous
        if previous is not None and not slot and len(self.held) < MAX_HELD \
                and self.held_bytes < MAX_HELD_BYTES \
                and key.at < previous.key.at + self.settings.probe_s:
            self.held.append(key)  # between probes: decoded only if a cut is found near it
            self.held_bytes += key.size
            return
        self._probe(key, slot)
        if slot:
            self.next_slot = _after(key.at, every)

    def finish(self) -> None:
        if self.held and self.previous is not None:
            last = self.held.pop()
            self._probe(last, False)

    def _probe(self, key: _Key, slot: bool) -> None:
        seen = self.walk.look(key)
        if seen is None:
            return
        previous, held, self.previous, self.held, self.held_bytes = \
            self.previous, self.held, seen, [], 0
        if previous is None:
            self.walk.keep(seen, "interval", 0.0, poster=True)
            return
        for cut, diff in _cuts(self.walk, previous, held, seen, self.settings.scene_threshold):
            self.walk.keep(cut, "scene", diff)
            slot = slot and cut is not seen  # taken as the scene frame: it counts once
        if slot:
            self.walk.keep(seen, "interval", 0.0)


def _cuts(walk: _Walk, before: _Seen, held: list[_Key], after: _Seen, threshold: float
          ) -> list[tuple[_Seen, float]]:
    """Each keyframe between two probes that starts a new scene, with how much it differs:
    the first keyframe that differs from ``before``, then again from there (a scene that
    returns to the look of the one before it, all between two probes, is not seen)."""
    keys = [before.key, *held, after.key]
    seen: dict[int, _Seen | None] = {0: before, len(keys) - 1: after}

    def look(index: int) -> _Seen | None:
        if index not in seen:
            seen[index] = walk.look(keys[index])
        return seen[index]

    def differs(index: int, start: _Seen) -> bool:
        picture = look(index)
        return picture is not None and _difference(start.tiny, picture.tiny) > threshold

    cadence = max(b.at - a.at for a, b in itertools.pairwise(keys))
    found: list[tuple[_Seen, float]] = []
    start, first = before, 1
    while _difference(start.tiny, after.tiny) > threshold:
        suspect = max(range(first, len(keys)), key=lambda i: _surprise(keys, i, cadence))
        if differs(suspect, start) and (suspect == first or _forced(keys, suspect, cadence)
                                        or not differs(suspect - 1, start)):
            cut = suspect  # the packets were right: one decode, two for a keyframe on cadence
        else:
            low, high = first, len(keys) - 1  # the last (``after``) differs: bisect for the first
            while low < high:
                middle = (low + high) // 2
                if differs(middle, start):
                    high = middle
                else:
                    low = middle + 1
            cut = low
        picture = look(cut)
        assert picture is not None  # differs() said it is there
        found.append((picture, _difference(start.tiny, picture.tiny)))
        if cut == len(keys) - 1:
            break
        start, first = picture, cut + 1
    return found


def _surprise(keys: list[_Key], index: int, cadence: float) -> float:
    """How much keyframe ``index`` looks like the start of a scene from its packet alone: it
    comes sooner than the GOP's cadence (an encoder's forced keyframe), or its size jumps."""
    gap = keys[index].at - keys[index - 1].at
    early = 1.0 - gap / cadence if cadence > 0 else 0.0
    jump = abs(math.log((keys[index].size + 1) / (keys[index - 1].size + 1)))
    return early + jump


def _forced(keys: list[_Key], index: int, cadence: float) -> bool:
    """Keyframe ``index`` came a tenth of a GOP or more before its turn (a camera's GOP is
    fixed): an encoder placed it at a cut (x264's and x265's scenecut, an editor's forced
    keyframe), so the keyframe before it still shows the old scene; no decode proves it."""
    return cadence > 0 and keys[index].at - keys[index - 1].at <= 0.9 * cadence


def _after(at: float, every: float) -> float:
    return (int(at / every + 1e-9) + 1) * every


@dataclass(frozen=True, slots=True)
class _Key:
    packet: Any
    at: float
    offset: int | None
    size: int


@dataclass(frozen=True, slots=True)
class _Seen:
    key: _Key
    small: Image.Image
    tiny: bytes


class _Walk:
    """Decodes single keyframes to small pictures and keeps the chosen ones as JPEGs."""

    def __init__(self, context: Any, stream: Any) -> None:
        self.context = context
        self.base, self.start = stream.time_base, stream.start_time or 0
        self.size = fitted(context.width, context.height, POSTER_SIDE)
        self.decodes = 0
        self.damage: str | None = None
        self.chosen: list[_Pick] = []

    def time_of(self, pts: int) -> float:
        return float((pts - self.start) * self.base)

    def look(self, key: _Key) -> _Seen | None:
        """The keyframe decoded alone (the decoder drained and reset, so any order works)."""
        self.decodes += 1
        try:
            frames = self.context.decode(key.packet)
            if not frames:  # held back for reordering: drain, then reset for the next one
                frames = self.context.decode(None)
                self.context.flush_buffers()
        except av_errors() as exc:  # a corrupt keyframe: skip it, keep the others
            self.context.flush_buffers()
            self.damage = f"damaged keyframe skipped ({describe(exc)})"
            return None
        if not frames:
            self.damage = "a keyframe gave no picture"
            return None
        # One scaling by FFmpeg per keyframe (a scaler per size would be rebuilt at each
        # call), the rest by Pillow on the small picture.
        small = frames[-1].reformat(width=self.size[0], height=self.size[1], format="rgb24",
                                    interpolation="AREA").to_image()
        from PIL import Image

        return _Seen(key, small, small.resize(_TINY, Image.Resampling.BOX).tobytes())

    def keep(self, seen: _Seen, kind: str, diff: float, *, poster: bool = False) -> None:
        # Encoded now: holding decoded 4K frames for the whole walk would cost gigabytes.
        self.chosen.append(_Pick(seen.key.at, seen.key.offset, kind, diff,
                                 _jpeg(seen.small, STRIP_SIDE),
                                 _jpeg(seen.small, POSTER_SIDE) if poster else b""))


@dataclass(frozen=True, slots=True)
class _Pick:
    at: float
    offset: int | None
    kind: str
    diff: float
    jpeg: bytes
    poster: bytes


def _trimmed(chosen: list[_Pick], settings: StripSettings) -> list[tuple[StripFrame, bytes]]:
    """At most ``max_frames``: every interval frame, then the strongest scene changes."""
    scenes = sorted((i for i, c in enumerate(chosen) if c.kind == "scene"),
                    key=lambda i: -chosen[i].diff)
    room = max(0, settings.max_frames - sum(1 for c in chosen if c.kind == "interval"))
    dropped = set(scenes[room:])
    kept = [
        (StripFrame(round(c.at, 3), c.offset, c.kind, c.jpeg), c.poster)
        for i, c in enumerate(chosen) if i not in dropped
    ][: settings.max_frames]
    # The strip travels en bloc with the thumbnail offer: keep it inside one codec frame.
    while len(kept) > 1 and sum(len(f.jpeg) for f, _ in kept) > MAX_STRIP_BYTES:
        kept.pop()
    return kept


def _difference(previous: bytes, tiny: bytes) -> float:
    if len(previous) != len(tiny):
        return 0.0
    return sum(abs(a - b) for a, b in zip(previous, tiny, strict=True)) / (255 * len(tiny))


def fitted(width: int, height: int, side: int) -> tuple[int, int]:
    """The size with long side ``side`` and the same shape, in even pixels."""
    scale = side / max(width, height, 1)
    return max(2, round(width * scale) // 2 * 2), max(2, round(height * scale) // 2 * 2)


def _jpeg(small: Image.Image, side: int) -> bytes:
    from PIL import Image

    if max(small.size) > side:
        small = small.resize(fitted(small.width, small.height, side), Image.Resampling.BOX)
    out = io.BytesIO()
    small.save(out, "JPEG", quality=QUALITY)
    return out.getvalue()


def av_errors() -> tuple[type[BaseException], ...]:
    import av

    return (av.FFmpegError, ValueError, MemoryError)


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
