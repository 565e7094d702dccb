"""Codec throughput: encode + streaming decode of thumbnail frames and chunk frames.

Run by hand (``.venv/bin/python bench/codec.py``); prints one JSON object.
Each figure is the best of a few rounds (the median round is given too).  The
main figures divide by this process's CPU time, because the machine is shared
and wall time also counts the time other programs hold the cores; the
``_wall`` figures are given too.
"""

from __future__ import annotations

import hashlib
import json
import random
import statistics
import time

from protocol.codec import FrameDecoder, encode
from protocol.messages import Chunk, Message, Purpose, ThumbnailOffer

THUMB_TARGET = 50_000  # frames/s
CHUNK_TARGET = 500.0  # MB/s of payload
ROUNDS = 5


def _thumbnail_offer(rng: random.Random) -> ThumbnailOffer:
    """A thumbnail frame like a camera sends: ~20 KB JPEG thumbnail and typical EXIF fields."""
    image_id = hashlib.sha256(rng.randbytes(32)).hexdigest()
    return ThumbnailOffer(
        image_id=image_id,
        origin=hashlib.sha256(b"camera-a").hexdigest(),
        seq=1234,
        name="IMG_1234.JPG",
        size=24_311_808,
        mime="image/jpeg",
        capture_time=1_795_000_000.25,
        metadata={
            "Make": "Canon",
            "Model": "EOS R5",
            "LensModel": "RF24-70mm F2.8 L IS USM",
            "DateTimeOriginal": "2026:11:21 10:42:17",
            "ExposureTime": "1/250",
            "FNumber": 2.8,
            "ISOSpeedRatings": 400,
            "FocalLength": 50.0,
            "Orientation": 1,
            "Flash": False,
            "GPSLatitude": 48.858,
            "GPSLongitude": 2.2945,
            "Width": 8192,
            "Height": 5464,
        },
        thumbnail=rng.randbytes(20_000),
        has_original=True,
    )


def _round_trip_rates(msg: Message, count: int) -> tuple[float, float, float]:
    """Messages per second through encode, feed and next_message.

    Returns the best round per CPU second, the best per wall second, and the median
    round per CPU second.
    """
    best_cpu = best_wall = 0.0
    rounds: list[float] = []
    for _ in range(ROUNDS):
        decoder = FrameDecoder()
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(count):
            decoder.feed(encode(msg))
            out = decoder.next_message()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        assert out == msg, "round trip changed the message"
        best_cpu, best_wall = max(best_cpu, count / cpu), max(best_wall, count / wall)
        rounds.append(count / cpu)
    return best_cpu, best_wall, statistics.median(rounds)


def main() -> None:
    rng = random.Random(7)
    thumb = _thumbnail_offer(rng)
    thumb_rate, thumb_wall, thumb_median = _round_trip_rates(thumb, 20_000)
    chunk_rates: dict[int, float] = {}
    chunk_walls: dict[int, float] = {}
    for size in (128 * 1024, 256 * 1024):
        chunk = Chunk(
            image_id=thumb.image_id, purpose=Purpose.SYNC, offset=size * 3, data=rng.randbytes(size)
        )
        rate, wall, _ = _round_trip_rates(chunk, 2_000)
        chunk_rates[size], chunk_walls[size] = rate * size / 1e6, wall * size / 1e6
    chunk_mb = min(chunk_rates.values())
    print(
        json.dumps(
            {
                "thumb_frames_per_s": round(thumb_rate),
                "thumb_frames_per_s_wall": round(thumb_wall),
                "thumb_frames_per_s_median": round(thumb_median),
                "thumb_frame_bytes": len(encode(thumb)),
                "chunk_mb_per_s": round(chunk_mb, 1),
                "chunk_mb_per_s_wall": round(min(chunk_walls.values()), 1),
                "chunk_mb_per_s_by_size": {str(k): round(v, 1) for k, v in chunk_rates.items()},
                "targets": {"thumb_frames_per_s": THUMB_TARGET, "chunk_mb_per_s": CHUNK_TARGET},
                "met": {
                    "thumb_frames_per_s": thumb_rate >= THUMB_TARGET,
                    "chunk_mb_per_s": chunk_mb >= CHUNK_TARGET,
                },
            }
        )
    )


if __name__ == "__main__":
    main()
