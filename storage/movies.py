"""A movie's strip of keyframe thumbnails and its metadata, never decoding more than keyframes.

FIG. 15-16: a movie's thumbnails are images taken at predetermined time intervals and at each
scene change.  ``extract_movie(path)`` demuxes keyframe packets only (the demuxer is told to
discard the rest, so their bytes are mostly not even read), decodes each keyframe to a tiny
image, and keeps

- one keyframe every ``every_s`` seconds (the first at or after each multiple), widened so a
  long movie still gets at most half of ``max_frames`` of them, and
- each keyframe whose tiny image differs from the previous keyframe's by more than
  ``scene_threshold`` (mean absolute difference of 32x18 RGB images, 0..1): a scene change.

The first strip frame is the poster.  A Sony proxy (``SUB/C0001S03.MP4`` beside
``CLIP/C0001.MP4``) is decoded instead of the main clip when there is one; metadata and byte
offsets still come from the main clip.  Hostile files: a deadline, a packet bound and limits on
what a header may declare; anything wrong ends in ``MovieUnusable`` with the reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from storage.metadata import MetadataValue

STRIP_SIDE: Final = 160  # long side of a strip frame; the poster is also made at POSTER_SIDE
POSTER_SIDE: Final = 320
EVERY_S: Final = 10.0
MAX_FRAMES: Final = 48  # 48 strip frames of ~4-8 KiB travel in one frame of the codec (1 MiB)
SCENE_THRESHOLD: Final = 0.15
DEADLINE_S: Final = 20.0
MAX_PACKETS: Final = 200_000  # keyframe packets demuxed (a 10-hour all-intra movie at 5 fps)
MAX_PROBES: Final = 2_000  # keyframes decoded to tiny images
MAX_DURATION_S: Final = 24 * 3600.0  # cameras split files long before a day
MAX_PIXELS: Final = 8192 * 8192
QUALITY: Final = 80
_TINY: Final = (32, 18)
MEDIA_HINT: Final = "install cammesh[media] to see movie strips"


class MovieUnusable(Exception):
    """This movie gives no strip; the message is the reason shown with its placeholder."""


@dataclass(frozen=True, slots=True)
class StripFrame:
    """One thumbnail of a movie's strip: when it is, where it is playable from, why chosen.

    ``offset`` is the byte offset in the movie file of the keyframe packet (None when the
    container does not say); ``kind`` is "interval" or "scene"."""

    time: float
    offset: int | None
    kind: str
    jpeg: bytes


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


@dataclass(frozen=True, slots=True)
class StripSettings:
    every_s: float = EVERY_S
    max_frames: int = MAX_FRAMES
    scene_threshold: float = SCENE_THRESHOLD
    deadline_s: float = DEADLINE_S
    max_packets: int = MAX_PACKETS


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


def extract_movie(path: Path, settings: StripSettings = StripSettings()) -> Movie:
    """The strip and metadata of the movie at ``path``; MovieUnusable says why there is none."""
    try:
        import av
    except ImportError as exc:
        raise MovieUnusable(f"{MEDIA_HINT} (PyAV is not installed)") from exc
    started = time.monotonic()
    deadline = started + settings.deadline_s
    try:
        # The timeout bounds each wait inside FFmpeg (it interrupts a read that hangs); the
        # deadline below bounds the whole walk.
        main = av.open(str(path), timeout=max(1.0, settings.deadline_s))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise MovieUnusable(f"the movie cannot be opened: {_text(exc)}") from exc
    with main:
        facts = _header(main)
        proxy = proxy_of(path)
        strip, reason = None, None
        if proxy is not None:
            try:
                with av.open(str(proxy), timeout=max(1.0, settings.deadline_s)) as small:
                    strip, reason = _strip(small, settings, deadline)
            except (av.FFmpegError, OSError, ValueError, MovieUnusable):
                strip, proxy = None, None  # a broken proxy: the main clip still has the movie
            if strip is not None:
                strip = _main_offsets(main, strip, deadline)
        if strip is None:
            strip, reason = _strip(main, settings, deadline)
    frames = tuple(f for f, _ in strip)
    metadata = dict(facts.metadata)
    metadata["strip_frames"] = len(frames)
    if proxy is not None:
        metadata["proxy"] = proxy.name
    return Movie(
        poster=strip[0][1], strip=frames, metadata=metadata, capture_time=facts.capture_time,
        width=facts.width, height=facts.height, reason=reason,
        proxy=None if proxy is None else proxy.name,
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


def _strip(
    container: Any, settings: StripSettings, deadline: float
) -> tuple[list[tuple[StripFrame, bytes]], str | None]:
    """(strip frame, poster-sized JPEG) pairs in time order, and why the walk stopped early."""
    import av

    stream = container.streams.video[0]
    stream.discard = av.stream.Discard.nonkey  # the demuxer skips what is not a keyframe (FIG. 15: I-pictures)
    context = stream.codec_context
    context.skip_frame = "NONKEY"
    duration = _duration(container, stream) or 0.0
    every = max(settings.every_s, duration / max(1, settings.max_frames // 2))
    start = stream.start_time or 0
    base = stream.time_base
    positions: dict[int, int | None] = {}
    chosen: list[_Pick] = []
    previous, next_slot, probes, packets, reason = None, 0.0, 0, 0, None
    try:
        for packet in container.demux(stream):
            packets += 1
            if packets > settings.max_packets:
                reason = f"stopped after {settings.max_packets} packets"
                break
            if time.monotonic() > deadline:
                reason = f"stopped at the {settings.deadline_s:g} s deadline"
                break
            if packet.pts is not None and packet.is_keyframe:
                positions[packet.pts] = packet.pos if packet.pos >= 0 else None
            elif packet.size:
                continue
            try:
                frames = context.decode(packet)
            except av_errors() as exc:  # a corrupt keyframe: skip it, keep the others
                reason = f"damaged keyframe skipped ({_text(exc)})"
                continue
            for frame in frames:
                if frame.pts is None:
                    continue
                probes += 1
                at = float((frame.pts - start) * base)
                tiny = frame.reformat(width=_TINY[0], height=_TINY[1], format="rgb24")
                tiny = tiny.to_image().tobytes()  # Pillow drops the rows' padding
                diff, previous = _difference(previous, tiny), tiny
                offset = positions.pop(frame.pts, None)
                if chosen and diff > settings.scene_threshold:
                    kind = "scene"
                elif at >= next_slot - 1e-6:
                    kind = "interval"
                else:
                    continue
                # Encode now: holding decoded 4K frames for the whole walk would cost gigabytes.
                chosen.append(_Pick(at, offset, kind, diff, _jpeg(frame, STRIP_SIDE),
                                    b"" if chosen else _jpeg(frame, POSTER_SIDE)))
                if at >= next_slot - 1e-6:
                    next_slot = (int(at / every + 1e-9) + 1) * every
            if probes >= MAX_PROBES:
                reason = f"stopped after {MAX_PROBES} keyframes"
                break
    except av_errors() as exc:
        reason = f"the movie ends in damage ({_text(exc)})"
    if not chosen:
        raise MovieUnusable(reason or "no keyframe could be decoded")
    return _trimmed(chosen, settings), reason


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
    return [
        (StripFrame(round(c.at, 3), c.offset, c.kind, c.jpeg), c.poster)
        for i, c in enumerate(chosen) if i not in dropped
    ][: settings.max_frames]


def _difference(previous: bytes | None, tiny: bytes) -> float:
    if previous is None or len(previous) != len(tiny):
        return 0.0
    return sum(abs(a - b) for a, b in zip(previous, tiny, strict=True)) / (255 * len(tiny))


def _jpeg(frame: Any, side: int) -> bytes:
    import io

    width, height = frame.width, frame.height
    scale = side / max(width, height)
    size = (max(2, round(width * scale) // 2 * 2), max(2, round(height * scale) // 2 * 2))
    image = frame.reformat(width=size[0], height=size[1], format="rgb24").to_image()
    out = io.BytesIO()
    image.save(out, "JPEG", quality=QUALITY)
    return out.getvalue()


def _main_offsets(
    main: Any, strip: list[tuple[StripFrame, bytes]], deadline: float
) -> list[tuple[StripFrame, bytes]]:
    """Offsets in the main clip of the keyframe at or before each proxy frame's time."""
    import av

    # Demuxed keyframe packets, not the index: index entries carry decoding times, which run
    # ahead of presentation times by the B-frame delay.
    stream = main.streams.video[0]
    base, start = stream.time_base, stream.start_time or 0
    stream.discard = av.stream.Discard.nonkey
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


def av_errors() -> tuple[type[BaseException], ...]:
    import av

    return (av.FFmpegError, ValueError, MemoryError)


def _text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
