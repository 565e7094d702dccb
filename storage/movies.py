"""A movie's strip of keyframe thumbnails and its metadata, never decoding more than keyframes.

FIG. 15-16: a movie's thumbnails are images taken at predetermined time intervals and at each
scene change.  ``extract_movie(path)`` demuxes keyframe packets only (the demuxer is told to
discard the rest, so their bytes are mostly not even read), decodes a keyframe at most every
``probe_s`` seconds to a tiny image, and keeps

- one keyframe every ``every_s`` seconds (the first at or after each multiple), widened so a
  long movie still gets at most half of ``max_frames`` of them, and
- each keyframe that starts a scene: when a probe's tiny image differs from the previous
  probe's by more than ``scene_threshold`` (mean absolute difference of 32x18 RGB images,
  0..1), the keyframes held undecoded between them are bisected for the first of the new
  scene, so a cut lands on its own keyframe for a few extra decodes.

The first strip frame is the poster.  A Sony proxy (``SUB/C0001S03.MP4`` beside
``CLIP/C0001.MP4``) is decoded instead of the main clip when there is one; metadata and byte
offsets still come from the main clip.  Hostile files: a deadline, a packet bound and limits on
what a header may declare; anything wrong ends in ``MovieUnusable`` with the reason.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import msgpack

if TYPE_CHECKING:  # Pillow loads when a movie is read, not with the card at start-up
    from PIL import Image

    from storage.metadata import MetadataValue

STRIP_SIDE: Final = 160  # long side of a strip frame; the poster is also made at POSTER_SIDE
POSTER_SIDE: Final = 320
EVERY_S: Final = 10.0
MAX_FRAMES: Final = 48  # 48 strip frames of ~4-8 KiB travel in one frame of the codec (1 MiB)
MAX_STRIP_BYTES: Final = 640 * 1024  # with the poster (<= 256 KiB), inside that 1 MiB frame
SCENE_THRESHOLD: Final = 0.15
PROBE_S: Final = 5.0  # keyframes closer than this to the last probe are decoded only for a cut
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
    keyframes_decoded: int = 0


@dataclass(frozen=True, slots=True)
class StripSettings:
    every_s: float = EVERY_S
    max_frames: int = MAX_FRAMES
    scene_threshold: float = SCENE_THRESHOLD
    deadline_s: float = DEADLINE_S
    max_packets: int = MAX_PACKETS
    probe_s: float = PROBE_S


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
        strip, reason, decoded = None, None, 0
        if proxy is not None:
            try:
                with av.open(str(proxy), timeout=max(1.0, settings.deadline_s)) as small:
                    strip, reason, decoded = _strip(small, settings, deadline)
            except (av.FFmpegError, OSError, ValueError, MovieUnusable):
                strip, proxy = None, None  # a broken proxy: the main clip still has the movie
            if strip is not None:
                strip = _main_offsets(main, strip, deadline)
        if strip is None:
            strip, reason, decoded = _strip(main, settings, deadline)
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


def _strip(
    container: Any, settings: StripSettings, deadline: float
) -> tuple[list[tuple[StripFrame, bytes]], str | None, int]:
    """(strip frame, poster-sized JPEG) pairs in time order, why the walk stopped early, and
    how many keyframes it decoded.

    Keyframes are probed (decoded) at most one per ``probe_s`` seconds, plus each one an
    interval slot needs.  When a probe differs from the previous one, the keyframes between
    them, held undecoded, are bisected for the first of the new scene: a cut is found at its
    own keyframe for about log2(keyframes between probes) extra decodes."""
    import av

    stream = container.streams.video[0]
    stream.discard = av.stream.Discard.nonkey  # the demuxer skips what is not a keyframe
    context = stream.codec_context
    context.skip_frame = "NONKEY"
    # Deblocking is invisible at thumbnail size and costs about a tenth of a keyframe's decode.
    context.options = {"skip_loop_filter": "all"}
    walk = _Walk(context, stream, settings)
    duration = _duration(container, stream) or 0.0
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
                state.offer(_Key(packet, walk.time_of(packet.pts), pos), every)
        else:
            state.finish()  # the last keyframes held: a cut near the end is still found
    except av_errors() as exc:
        reason = f"the movie ends in damage ({_text(exc)})"
    if not walk.chosen:
        raise MovieUnusable(reason or walk.damage or "no keyframe could be decoded")
    return _trimmed(walk.chosen, settings), reason or walk.damage, walk.decodes


class _Probing:
    """Which keyframes to decode: one per ``probe_s``, each interval slot's, and, between two
    probes that differ, those a bisection for each cut needs."""

    def __init__(self, walk: _Walk, settings: StripSettings) -> None:
        self.walk, self.settings = walk, settings
        self.previous: _Seen | None = None
        self.held: list[_Key] = []
        self.next_slot = 0.0

    def offer(self, key: _Key, every: float) -> None:
        slot = key.at >= self.next_slot - 1e-6
        previous = self.previous
        if previous is not None and not slot and len(self.held) < MAX_HELD \
                and key.at < previous.key.at + self.settings.probe_s:
            self.held.append(key)  # between probes: decoded only if a cut is found near it
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
        previous, held, self.previous, self.held = self.previous, self.held, seen, []
        if previous is None:
            self.walk.keep(seen, "interval", 0.0, poster=True)
            return
        for cut in _cuts(self.walk, previous, held, seen, self.settings.scene_threshold):
            self.walk.keep(cut, "scene", 1.0)
            slot = slot and cut is not seen  # taken as the scene frame: it counts once
        if slot:
            self.walk.keep(seen, "interval", 0.0)


def _cuts(walk: _Walk, before: _Seen, held: list[_Key], after: _Seen, threshold: float
          ) -> list[_Seen]:
    """Each keyframe between two probes that starts a new scene, by bisection: the first held
    keyframe that differs from ``before``, then again from there (a scene that returns to
    the look of the one before it, all between two probes, is not seen)."""
    found: list[_Seen] = []
    while _difference(before.tiny, after.tiny) > threshold:
        low, high, cut = 0, len(held), after
        while low < high:
            middle = (low + high) // 2
            seen = walk.look(held[middle])
            if seen is not None and _difference(before.tiny, seen.tiny) > threshold:
                high, cut = middle, seen
            else:
                low = middle + 1
        found.append(cut)
        if cut is after:
            break
        before, held = cut, held[low + 1 :]
    return found


MAX_HELD: Final = 512  # keyframe packets held between two probes (bounded memory)


def _after(at: float, every: float) -> float:
    return (int(at / every + 1e-9) + 1) * every


@dataclass(frozen=True, slots=True)
class _Key:
    packet: Any
    at: float
    offset: int | None


@dataclass(frozen=True, slots=True)
class _Seen:
    key: _Key
    small: Image.Image
    tiny: bytes


class _Walk:
    """Decodes single keyframes to small pictures and keeps the chosen ones as JPEGs."""

    def __init__(self, context: Any, stream: Any, settings: StripSettings) -> None:
        self.context, self.settings = context, settings
        self.base, self.start = stream.time_base, stream.start_time or 0
        self.size = _fitted(context.width, context.height, POSTER_SIDE)
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
            self.damage = f"damaged keyframe skipped ({_text(exc)})"
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


def _difference(previous: bytes | None, tiny: bytes) -> float:
    if previous is None or len(previous) != len(tiny):
        return 0.0
    return sum(abs(a - b) for a, b in zip(previous, tiny, strict=True)) / (255 * len(tiny))


def _fitted(width: int, height: int, side: int) -> tuple[int, int]:
    """The size with long side ``side`` and the same shape, in even pixels."""
    scale = side / max(width, height, 1)
    return max(2, round(width * scale) // 2 * 2), max(2, round(height * scale) // 2 * 2)


def _jpeg(small: Image.Image, side: int) -> bytes:
    from PIL import Image

    if max(small.size) > side:
        small = small.resize(_fitted(small.width, small.height, side), Image.Resampling.BOX)
    out = io.BytesIO()
    small.save(out, "JPEG", quality=QUALITY)
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


# --- isolation: a decoder that hangs or crashes inside FFmpeg must not take the import along --

HARD_TIMEOUT_S: Final = DEADLINE_S + 10.0  # the child's own deadline first, then a kill


def extract_movie_isolated(
    path: Path, settings: StripSettings = StripSettings(), *,
    hard_timeout_s: float = HARD_TIMEOUT_S, command: Sequence[str] | None = None,
) -> Movie:
    """``extract_movie`` in a child process, killed after ``hard_timeout_s``.

    The deadline and packet bound inside the walk cannot stop a single FFmpeg call that
    never returns, nor survive one that crashes; a child process can be killed, and its
    death is only a reason.  ``command`` replaces the child's command line (tests)."""
    argv = list(command) if command is not None else [
        sys.executable, "-m", "storage.movies", str(path),
        json.dumps(dataclasses.asdict(settings)),
    ]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")]))
    try:
        done = subprocess.run(argv, capture_output=True, timeout=hard_timeout_s, env=env,
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:  # run() killed the child
        raise MovieUnusable(
            f"the decoder did not finish within {hard_timeout_s:g} s and was stopped"
        ) from None
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        raise MovieUnusable(f"the decoder crashed on this file ({name})")
    try:
        reply = msgpack.unpackb(done.stdout)
    except (ValueError, msgpack.UnpackException):
        reply = None
    if not isinstance(reply, dict):
        raise MovieUnusable(f"the decoder process failed (exit {done.returncode})")
    if "unusable" in reply:
        raise MovieUnusable(str(reply["unusable"]))
    strip = tuple(StripFrame(*f) for f in reply.pop("strip"))
    return Movie(strip=strip, **reply)


def _child(argv: list[str]) -> int:
    """``python -m storage.movies PATH SETTINGS``: the movie as msgpack on stdout."""
    path, settings = Path(argv[0]), StripSettings(**json.loads(argv[1]))
    try:
        movie = extract_movie(path, settings)
    except MovieUnusable as exc:
        reply: dict[str, Any] = {"unusable": str(exc)}
    except Exception as exc:  # anything else is still only a reason
        reply = {"unusable": f"movie extraction failed: {_text(exc)}"}
    else:
        reply = dataclasses.asdict(movie)
        reply["strip"] = [[f.time, f.offset, f.kind, f.jpeg] for f in movie.strip]
    sys.stdout.buffer.write(msgpack.packb(reply))
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
