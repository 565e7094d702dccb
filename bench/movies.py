"""Movie strip speed: keyframe strip extraction against decoding every frame of the same clip.

Prints one JSON object.  Targets (issue 18): the strip at least 50x faster than a full decode,
and at most 1 s per minute of 4K video.  Clips are generated (a panning texture with fresh
grain in every frame, tinted per scene, three hard cuts, a keyframe every ``--gop`` seconds
and at each cut as an encoder places them, B-frames) and cached under the system temp dir.
``--rate crf`` encodes them at x264/x265 constant quality (``--crf``), which spends most bits
on keyframes; ``--rate camera`` at a camera's constant bitrate (CAMERA_KBPS), as its hardware
encoder does.  Strip and full decode alternate, ``--runs`` times each (the order swapped every
run), and each run's ratio is listed: wall-clock seconds and CPU seconds (this process's, all
threads: the figure a loaded machine leaves comparable).  Each clip also says what a camera's
would be compared on (bitrate, GOP, keyframe size and share of the bytes), and what one
keyframe costs to decode: times the strip's length, the floor of any strip.

    python bench/movies.py [--seconds 30] [--gop 1] [--runs 3] [--rate crf|camera] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
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
# A camera's recording rates, kbit/s: e.g. Sony XAVC S HD 25-50, XAVC S 4K 60-100 (H.264),
# XAVC HS 4K 45-50 (H.265); phones write 4K H.265 at ~40-50.  The low end of each.
CAMERA_KBPS = {("1080p", "h264"): 25_000, ("1080p", "h265"): 15_000,
               ("4K", "h264"): 60_000, ("4K", "h265"): 40_000}


def clip(size: str, codec: str, seconds: float, gop: float, noise: int, crf: int,
         rate: str) -> Path:
    kbps = CAMERA_KBPS[size, codec] if rate == "camera" else None
    quality = f"crf{crf}" if kbps is None else f"cbr{kbps}k"
    # pan5: H.265 clips whose cuts are keyframes (forced-idr); pan4's were plain I-frames.
    kind = "pan5" if codec == "h265" else "pan4"
    path = CACHE / f"movie-{kind}-{size}-{codec}-{seconds:g}s-gop{gop:g}-noise{noise}-{quality}.mp4"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        cuts = (seconds * 0.26, seconds * 0.53, seconds * 0.79)
        temp = path.with_suffix(".tmp.mp4")
        write_movie(temp, seconds=seconds, size=SIZES[size], codec=CODECS[codec], cuts=cuts,
                    gop_s=gop, textured=True, crf=crf, preset=PRESETS[codec], noise=noise,
                    bitrate_kbps=kbps)
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


def alternated(strip: Any, full: Any, runs: int) -> dict[str, list[float]]:
    """Wall and CPU seconds of ``strip`` and ``full``, run in turn, the order swapped each run."""
    out: dict[str, list[float]] = {"strip_wall": [], "strip_cpu": [], "full_wall": [],
                                   "full_cpu": []}
    for run in range(runs):
        for name, job in ((("strip", strip), ("full", full)) if run % 2 == 0
                          else (("full", full), ("strip", strip))):
            wall, cpu = time.perf_counter(), time.process_time()
            job()
            out[f"{name}_wall"].append(time.perf_counter() - wall)
            out[f"{name}_cpu"].append(time.process_time() - cpu)
    return out


def spread(values: list[float], digits: int = 1) -> dict[str, float]:
    return {"median": round(statistics.median(values), digits),
            "min": round(min(values), digits), "max": round(max(values), digits)}


def measure(path: Path, seconds: float, runs: int) -> dict[str, Any]:
    """The figures of one clip (see the module docstring)."""
    movie = extract_movie(path)
    times = alternated(lambda p=path: extract_movie(p),
                       lambda p=path: full_decode(p), runs)
    key_s = one_keyframe(path, 5)
    wall = [f / s for f, s in zip(times["full_wall"], times["strip_wall"], strict=True)]
    cpu = [f / s for f, s in zip(times["full_cpu"], times["strip_cpu"], strict=True)]
    per_minute = 60.0 / seconds
    return {
        "bitrate_mbps": round(path.stat().st_size * 8 / seconds / 1e6, 1),
        **stream_facts(path),
        "one_keyframe_decode_s": round(key_s, 4),
        # What decoding only the strip's own frames would cost: no scene search at all.
        "floor_s_per_minute": round(key_s * len(movie.strip) * per_minute, 3),
        "strip_s_per_minute": spread([t * per_minute for t in times["strip_wall"]], 3),
        "strip_cpu_s_per_minute": spread([t * per_minute for t in times["strip_cpu"]],
                                         3),
        "full_decode_s_per_minute": spread(
            [t * per_minute for t in times["full_wall"]], 2),
        "full_decode_cpu_s_per_minute": spread(
            [t * per_minute for t in times["full_cpu"]], 2),
        "speedup": spread(wall),
        "speedup_runs": [round(r, 1) for r in wall],
        "speedup_cpu": spread(cpu),
        "speedup_cpu_runs": [round(r, 1) for r in cpu],
        # The best any strip of this length could do against this full decode.
        "speedup_ceiling": round(statistics.median(times["full_wall"])
                                 / (key_s * len(movie.strip)), 1),
        "strip_frames": len(movie.strip),
        "keyframes_decoded": movie.keyframes_decoded,
        "scene_frames": sum(1 for f in movie.strip if f.kind == "scene"),
        "file_bytes": path.stat().st_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--gop", type=float, default=1.0, help="seconds between keyframes")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--crf", type=int, default=20, help="x264/x265 constant quality")
    parser.add_argument("--noise", type=int, default=4,
                        help="grain amplitude added afresh to each frame (0: none)")
    parser.add_argument("--rate", choices=("crf", "camera"), default="crf",
                        help="constant quality (--crf), or a camera's constant bitrate")
    parser.add_argument("--quick", action="store_true", help="10 s clips, one run")
    parser.add_argument("--only", default="", help="comma-separated clip names, e.g. 4K-h264")
    parser.add_argument("--clip", action="append", default=[], metavar="FILE",
                        help="also measure this movie file (e.g. a camera's own)")
    args = parser.parse_args()
    seconds, runs = (10.0, 1) if args.quick else (args.seconds, args.runs)
    wanted = set(filter(None, args.only.split(",")))
    results: dict[str, Any] = {}
    for size in SIZES:
        for codec in CODECS:
            if wanted and f"{size}-{codec}" not in wanted:
                continue
            path = clip(size, codec, seconds, args.gop, args.noise, args.crf, args.rate)
            results[f"{size}-{codec}"] = measure(path, seconds, runs)
    for extra in args.clip:  # a camera's own movie, or a clip made by an earlier run
        with av.open(str(extra)) as container:
            length = float(container.duration or 0) / 1_000_000
        results[Path(extra).name] = {"clip_seconds": round(length, 3),
                                     **measure(Path(extra), length, runs)}
    worst_ratio = min(r["speedup"]["median"] for r in results.values())
    worst_cpu = min(r["speedup_cpu"]["median"] for r in results.values())
    worst_4k = max((r["strip_s_per_minute"]["median"] for k, r in results.items()
                    if k.startswith("4K")), default=None)
    print(json.dumps({
        "clip_seconds": seconds, "gop_s": args.gop, "runs": runs, "noise": args.noise,
        "rate": args.rate, "crf": args.crf if args.rate == "crf" else None,
        "content": "panning texture with grain, four scenes (the docstring)",
        "load_average": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
        "results": results,
        "targets": {
            "speedup_at_least": RATIO_TARGET, "worst_speedup": worst_ratio,
            "worst_speedup_cpu": worst_cpu,
            "speedup_met": worst_ratio >= RATIO_TARGET,
            "strip_s_per_minute_4k_at_most": SECONDS_PER_MINUTE_4K_TARGET,
            "worst_4k_strip_s_per_minute": worst_4k,
            "4k_met": worst_4k is not None and worst_4k <= SECONDS_PER_MINUTE_4K_TARGET,
        },
    }, indent=2))


if __name__ == "__main__":
    main()
