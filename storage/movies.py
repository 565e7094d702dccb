"""A movie's strip of keyframe thumbnails and its metadata, never decoding more than keyframes.

FIG. 15-16: a movie's thumbnails are images taken at predetermined time intervals and at each
scene change.  ``extract_movie(path)`` demuxes the packets, decodes keyframes only, each
alone and as few as it can (``storage.movie_strip``), and keeps

- one keyframe every ``every_s`` seconds (the first at or after each multiple), widened so a
  long movie still gets at most half of ``max_frames`` of them, and
- each keyframe that starts a scene: when a probe's tiny image differs from the previous
  probe's by more than ``scene_threshold`` (mean absolute difference of 32x18 RGB images,
  0..1), the keyframes held undecoded between them are searched for the first of the new
  scene, so a cut lands on its own keyframe for one or a few extra decodes.

The first strip frame is the poster.  A Sony proxy (``SUB/C0001S03.MP4`` beside
``CLIP/C0001.MP4``) is decoded instead of the main clip when there is one; metadata and byte
offsets still come from the main clip.  Hostile files: a deadline, a packet bound and limits on
what a header may declare; anything wrong ends in ``MovieUnusable`` with the reason.  Which
keyframes are decoded is ``storage.movie_strip``'s; ``storage.movie_process`` runs all this in a
child process that can be killed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from storage.errors import MovieUnusable
from storage.movie_strip import (
    POSTER_SIDE,
    STRIP_SIDE,
    StripFrame,
    StripSettings,
    describe,
    walk_strip,
)

if TYPE_CHECKING:
    from storage.metadata import MetadataValue

__all__ = [
    "EMPTY_MOVIE", "MEDIA_HINT", "MOVIE_SUFFIXES", "POSTER_SIDE", "STRIP_SIDE", "Movie", "MovieUnusable", "StripFrame",
    "StripSettings", "extract_movie", "proxy_of",
]

MAX_DURATION_S: Final = 24 * 3600.0  # cameras split files long before a day
MAX_PIXELS: Final = 8192 * 8192
MEDIA_HINT: Final = "install cammesh[media] to see movie strips"
# A movie file's name, for the one file whose bytes cannot say it is one: an empty one (a
# recording cut off as it began).  Every other file's type comes from its bytes.
MOVIE_SUFFIXES: Final = {
    ".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime",
    ".mts": "video/mp2t", ".m2ts": "video/mp2t", ".ts": "video/mp2t",
}
EMPTY_MOVIE: Final = "empty movie file (0 bytes): nothing was recorded into it"
# Given to the demuxer's stream probe: without it, opening an H.264 file decodes its first
# frames (seven, to guess the reordering delay): 0.4 s of a 4K file, more than the strip.
_OPEN_OPTIONS: Final = {"skip_frame": "nonkey"}


@dataclass(frozen=True, slots=True)
class Movie:
    """What import learns of a movie: its poster (the picture's thumbnail), strip, metadata."""

    poster: bytes
    strip: tuple[StripFrame, ...]
    metadata: dict[str, MetadataValue] = field(default_factory=dict)
    capture_time: float | None = None
    width: int | None = None
    height: int | None = None
    reason: str | None = None  # a strip cut short says why (deadline, packet bound)
    proxy: str | None = None
    keyframes_decoded: int = 0


def proxy_of(path: Path) -> Path | None:
    """The proxy a Sony camera wrote beside ``CLIP/C0001.MP4``: ``SUB/C0001S03.MP4``."""
    if path.parent.name.upper() != "CLIP":
        return None
    try:
        siblings = [p for p in path.parent.parent.iterdir() if p.name.upper() == "SUB"]
        found = sorted(
            p for sub in siblings for p in sub.iterdir()
            if p.is_file() and p.suffix.upper() == path.suffix.upper()
            and p.stem.upper().startswith(path.stem.upper() + "S")
        )
    except OSError:
        return None
    return found[0] if found else None


def extract_movie(path: Path, settings: StripSettings | None = None) -> Movie:
    """The strip and metadata of the movie at ``path``; MovieUnusable says why there is none."""
    settings = settings or StripSettings()
    try:
        import av
    except ImportError as exc:
        raise MovieUnusable(f"{MEDIA_HINT} (PyAV is not installed)") from exc
    started = time.monotonic()
    deadline = started + settings.deadline_s
    try:
        # The timeout bounds each wait inside FFmpeg (it interrupts a read that hangs); the
        # deadline below bounds the whole walk.
        main = av.open(str(path), timeout=max(1.0, settings.deadline_s),
                       options=_OPEN_OPTIONS)
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise MovieUnusable(f"the movie cannot be opened: {describe(exc)}") from exc
    with main:
        facts = _header(main)
        proxy = proxy_of(path)
        strip, reason, decoded = None, None, 0
        if proxy is not None:
            try:
                with av.open(str(proxy), timeout=max(1.0, settings.deadline_s),
                             options=_OPEN_OPTIONS) as small:
                    strip, reason, decoded = walk_strip(small, settings, deadline)
            except (av.FFmpegError, OSError, ValueError, MovieUnusable):
                strip, proxy = None, None  # a broken proxy: the main clip still has the movie
            if strip is not None:
                strip = _main_offsets(main, strip, deadline)
        if strip is None:
            strip, reason, decoded = walk_strip(main, settings, deadline)
    frames = tuple(f for f, _ in strip)
    metadata = dict(facts.metadata)
    metadata["strip_frames"] = len(frames)
    if proxy is not None:
        metadata["proxy"] = proxy.name
    return Movie(
        poster=strip[0][1], strip=frames, metadata=metadata, capture_time=facts.capture_time,
        width=facts.width, height=facts.height, reason=reason,
        proxy=None if proxy is None else proxy.name, keyframes_decoded=decoded,
    )


@dataclass(frozen=True, slots=True)
class _Header:
    metadata: dict[str, MetadataValue]
    capture_time: float | None
    width: int
    height: int


def _header(container: Any) -> _Header:
    if not container.streams.video:
        raise MovieUnusable("no video stream in the file")
    stream = container.streams.video[0]
    width, height = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
    if not width or not height:
        raise MovieUnusable("the video stream declares no picture size")
    if width * height > MAX_PIXELS:
        raise MovieUnusable(f"the header declares {width}x{height} pixels: past the limit")
    duration = _duration(container, stream)
    for declared in (duration, _container_duration(container)):
        if declared is not None and not 0 <= declared <= MAX_DURATION_S:
            raise MovieUnusable(
                f"the header declares a duration of {declared:.0f} s: not believed"
            )
    rate = stream.average_rate or stream.guessed_rate
    metadata: dict[str, MetadataValue] = {
        "width": width, "height": height, "codec": str(stream.codec_context.name)[:64],
    }
    if duration is not None:
        metadata["duration"] = round(duration, 3)
    if rate:
        metadata["frame_rate"] = round(float(rate), 3)
    created = container.metadata.get("creation_time") or stream.metadata.get("creation_time")
    capture_time = _epoch(created) if created else None
    if created:
        metadata["creation_time"] = str(created)[:64]
    return _Header(metadata, capture_time, width, height)


def _duration(container: Any, stream: Any) -> float | None:
    if stream.duration and stream.time_base:  # 0 is how FFmpeg says "unknown" here
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration) / 1_000_000  # AV_TIME_BASE
    return None


def _container_duration(container: Any) -> float | None:
    return None if container.duration is None else float(container.duration) / 1_000_000


def _epoch(text: str) -> float | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None



def _main_offsets(
    main: Any, strip: list[tuple[StripFrame, bytes]], deadline: float
) -> list[tuple[StripFrame, bytes]]:
    """Offsets in the main clip of the keyframe at or before each proxy frame's time."""
    # Demuxed keyframe packets, not the index: index entries carry decoding times, which run
    # ahead of presentation times by the B-frame delay.  No discard (see walk_strip).
    stream = main.streams.video[0]
    base, start = stream.time_base, stream.start_time or 0
    keys: list[tuple[float, int]] = []
    for packet in main.demux(stream):
        if time.monotonic() > deadline:
            break
        if packet.pts is not None and packet.is_keyframe:
            keys.append((float((packet.pts - start) * base), packet.pos))
    out = []
    for frame, poster in strip:
        before = [pos for at, pos in keys if at <= frame.time + 1e-3]
        offset = before[-1] if before and before[-1] >= 0 else None
        out.append((StripFrame(frame.time, offset, frame.kind, frame.jpeg), poster))
    return out

