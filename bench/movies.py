"""Movie strip speed: keyframe strip extraction against decoding every frame of the same clip.

Prints one JSON object.  Targets (issue 18): the strip at least 50x faster than a full decode,
and at most 1 s per minute of 4K video.  Clips are generated (a panning texture with fresh
grain in every frame, tinted per scene, three hard cuts, a keyframe every ``--gop`` seconds
and at each cut as an encoder places them, B-frames) and cached under the system temp dir;
each figure is the median of ``--runs`` runs, with every run listed.  Each clip also says what
a camera's would be compared on (bitrate, GOP, keyframe size and share of the bytes), and
what one keyframe costs to decode: times the strip's length, the floor of any strip.

    python bench/movies.py [--seconds 30] [--gop 1] [--runs 3] [--crf 20] [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import av  # noqa: E402

from storage.movie_samples import write_movie  # noqa: E402
from storage.movies import extract_movie  # noqa: E402

CACHE = Path(tempfile.gettempdir()) / "cammesh-bench"
RATIO_TARGET = 50.0
SECONDS_PER_MINUTE_4K_TARGET = 1.0
SIZES = {"1080p": (1920, 1080), "4K": (3840, 2160)}
CODECS = {"h264": "libx264", "h265": "libx265"}
PRESETS = {"h264": "superfast", "h265": "ultrafast"}


def clip(size: str, codec: str, seconds: float, gop: float, noise: int, crf: int) -> Path:
    path = CACHE / f"movie-pan4-{size}-{codec}-{seconds:g}s-gop{gop:g}-noise{noise}-crf{crf}.mp4"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        cuts = (seconds * 0.26, seconds * 0.53, seconds * 0.79)
        temp = path.with_suffix(".tmp.mp4")
        write_movie(temp, seconds=seconds, size=SIZES[size], codec=CODECS[codec], cuts=cuts,
                    gop_s=gop, textured=True, crf=crf, preset=PRESETS[codec], noise=noise)
        temp.rename(path)
    return path


def full_decode(path: Path) -> int:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return sum(1 for _ in container.decode(stream))


def stream_facts(path: Path) -> dict[str, Any]:
    """What a camera would be compared on: keyframes, GOP, B-frames, keyframe share of bytes."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = [(p.is_keyframe, p.size, p.pts, p.dts) for p in container.demux(stream)
                   if p.size]
    keys = [size for key, size, _, _ in packets if key]
    reordered = sum(1 for _, _, pts, dts in packets if pts is not None and pts != dts)
    return {
        "frames": len(packets), "keyframes": len(keys),
        "mean_gop_frames": round(len(packets) / max(1, len(keys)), 1),
        "keyframe_kib": round(statistics.mean(keys) / 1024, 1),
        "keyframe_share_of_bytes": round(sum(keys) / sum(size for _, size, _, _ in packets), 2),
        "b_frames": reordered > len(packets) // 4,
    }


def one_keyframe(path: Path, runs: int) -> float:
    """Median seconds to decode one keyframe alone, as the strip does (no deblocking): the
    floor of a strip's cost is this times the strip's length."""
    times = []
    with av.open(str(path), options={"skip_frame": "nonkey"}) as container:
        stream = container.streams.video[0]
        context = stream.codec_context
        context.skip_frame, context.options = "NONKEY", {"skip_loop_filter": "all"}
        keys = [p for p in container.demux(stream) if p.is_keyframe and p.size][:max(3, runs)]
        for packet in keys:
            start = time.perf_counter()
            if not context.decode(packet):
                context.decode(None)
                context.flush_buffers()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def timed(run: Any, runs: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--gop", type=float, default=1.0, help="seconds between keyframes")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--crf", type=int, default=20, help="x264/x265 constant quality")
    parser.add_argument("--noise", type=int, default=4,
                        help="grain amplitude added afresh to each frame (0: none)")
    parser.add_argument("--quick", action="store_true", help="10 s clips, one run")
    args = parser.parse_args()
    seconds, runs = (10.0, 1) if args.quick else (args.seconds, args.runs)
    results: dict[str, Any] = {}
    for size in SIZES:
        for codec in CODECS:
            path = clip(size, codec, seconds, args.gop, args.noise, args.crf)
            strip_s, strip_runs = timed(lambda p=path: extract_movie(p), runs)
            decode_s, decode_runs = timed(lambda p=path: full_decode(p), runs)
            movie = extract_movie(path)
            key_s = one_keyframe(path, 5)
            per_minute = strip_s * 60.0 / seconds
            results[f"{size}-{codec}"] = {
                "bitrate_mbps": round(path.stat().st_size * 8 / seconds / 1e6, 1),
                **stream_facts(path),
                "one_keyframe_decode_s": round(key_s, 4),
                # What decoding only the strip's own frames would cost: no scene search at all.
                "floor_s_per_minute": round(key_s * len(movie.strip) * 60.0 / seconds, 3),
                "strip_s_per_minute": round(per_minute, 4),
                "strip_runs_s": [round(t, 4) for t in strip_runs],
                "full_decode_s_per_minute": round(decode_s * 60.0 / seconds, 3),
                "full_decode_runs_s": [round(t, 3) for t in decode_runs],
                "speedup": round(decode_s / strip_s, 1),
                # The best any strip of this length could do against this full decode.
                "speedup_ceiling": round(decode_s / (key_s * len(movie.strip)), 1),
                "strip_frames": len(movie.strip),
                "keyframes_decoded": movie.keyframes_decoded,
                "scene_frames": sum(1 for f in movie.strip if f.kind == "scene"),
                "file_bytes": path.stat().st_size,
            }
    worst_ratio = min(r["speedup"] for r in results.values())
    worst_4k = max(r["strip_s_per_minute"] for k, r in results.items() if k.startswith("4K"))
    print(json.dumps({
        "clip_seconds": seconds, "gop_s": args.gop, "runs": runs, "noise": args.noise,
        "crf": args.crf, "content": "panning texture with grain, four scenes (the docstring)",
        "results": results,
        "targets": {
            "speedup_at_least": RATIO_TARGET, "worst_speedup": worst_ratio,
            "speedup_met": worst_ratio >= RATIO_TARGET,
            "strip_s_per_minute_4k_at_most": SECONDS_PER_MINUTE_4K_TARGET,
            "worst_4k_strip_s_per_minute": worst_4k,
            "4k_met": worst_4k <= SECONDS_PER_MINUTE_4K_TARGET,
        },
    }, indent=2))


if __name__ == "__main__":
    main()
