"""Thumbnail speed on generated 24-megapixel JPEGs, and catalog time per imported picture.

Prints one JSON object. Targets (issue 2): the embedded-thumbnail path at least 500
pictures/s; the decode fallback no slower than 1.2x Pillow's own draft + thumbnail; the
catalog at most 5 ms per picture. Pictures are cached under the system temp dir.

    python bench/thumbs.py [--pictures N] [--imports N] [--quick]
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import logging
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from storage.samples import write_sample_jpegs  # noqa: E402
from storage.thumbnails import MAX_SIDE, QUALITY, extract  # noqa: E402

CACHE = Path(tempfile.gettempdir()) / "cammesh-bench"
EMBEDDED_TARGET = 500.0
FALLBACK_RATIO = 1.2
CATALOG_TARGET_MS = 5.0


def cached_samples(size: str, count: int, seed: int) -> list[Path]:
    """``count`` sample JPEGs, generated once into the cache and reused by later runs."""
    folder = CACHE / f"{size}-seed{seed}-v3"
    done = folder / "complete"  # written last: an interrupted run's pictures are not reused
    if done.is_file() and int(done.read_text() or 0) >= count:
        return sorted(folder.glob("IMG_*.JPG"))[:count]
    paths = write_sample_jpegs(folder, count, size=size, seed=seed)
    done.write_text(str(count))
    return paths


def rate(work: Callable[[Path], object], paths: list[Path], *, rounds: int) -> float:
    """Pictures per second, from the best of ``rounds`` passes over ``paths``."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for path in paths:
            work(path)
        best = min(best, time.perf_counter() - start)
    return len(paths) / best


def read_all(path: Path) -> None:
    path.read_bytes()


def embedded(path: Path) -> None:
    assert extract(path).thumbnail_source == "embedded"


def fallback(path: Path) -> None:
    assert extract(path, use_embedded=False).thumbnail_source == "decoded"


def pillow_draft(path: Path) -> None:
    """Pillow on its own: open, draft, thumbnail, encode (the same output as ours)."""
    with Image.open(path) as image:
        image.draft("RGB", (MAX_SIDE, MAX_SIDE))
        image.thumbnail((MAX_SIDE, MAX_SIDE))
        image.save(io.BytesIO(), "JPEG", quality=QUALITY)


@contextmanager
def catalog_timer() -> Iterator[list[float]]:
    """Time spent inside the catalog's public methods (outermost calls only)."""
    from storage.catalog import SqliteCatalog

    spent = [0.0]
    depth = [0]
    saved: dict[str, Any] = {}

    def timed(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            depth[0] += 1
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    spent[0] += time.perf_counter() - start

        return call

    def timed_block(method: Callable[..., Any]) -> Callable[..., Any]:
        # A transaction's cost (the COMMIT and its fsync) is paid when the block ends.
        @functools.wraps(method)
        @contextmanager
        def call(*args: Any, **kwargs: Any) -> Iterator[Any]:
            depth[0] += 1
            start = time.perf_counter()
            try:
                with method(*args, **kwargs) as value:
                    yield value
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    spent[0] += time.perf_counter() - start

        return call

    for name, member in vars(SqliteCatalog).items():
        if not name.startswith("_") and callable(member) and not isinstance(member, type):
            saved[name] = member
            wrap = timed_block if name == "transaction" else timed
            setattr(SqliteCatalog, name, wrap(member))
    try:
        yield spent
    finally:
        for name, member in saved.items():
            setattr(SqliteCatalog, name, member)


def catalog_ms(count: int) -> dict[str, Any]:
    """Import ``count`` small pictures into a fresh card; catalog ms per picture."""
    try:
        from storage.card import Card
        from storage.importer import import_paths
    except ImportError as exc:
        return {"catalog_skipped": f"card or importer not importable: {exc}"}
    paths = cached_samples("small", count, seed=7)
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="cammesh-bench-card-") as folder:
        card = Card.create(
            Path(folder) / "card",
            device_id=secrets.token_hex(32),
            name="bench",
            capacity=10 * 1024**3,
        )
        try:
            with catalog_timer() as spent:
                start = time.perf_counter()
                summary = import_paths(card, paths, now=time.time())
                total = time.perf_counter() - start
        finally:
            card.close()
    return {
        "catalog_ms_per_picture": round(spent[0] * 1000 / count, 3),
        "import_ms_per_picture": round(total * 1000 / count, 3),
        "imported": len(summary.imported),
        "catalog_target_ms": CATALOG_TARGET_MS,
        "catalog_target_met": spent[0] * 1000 / count <= CATALOG_TARGET_MS,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pictures", type=int, default=12, help="24 MP pictures to time")
    parser.add_argument("--imports", type=int, default=1000, help="pictures to import")
    parser.add_argument("--quick", action="store_true", help="a small, fast run")
    args = parser.parse_args(argv)
    pictures = min(args.pictures, 3) if args.quick else args.pictures
    imports = min(args.imports, 100) if args.quick else args.imports
    rounds = 2 if args.quick else 3

    started = time.perf_counter()
    paths = cached_samples("24mp", pictures, seed=1)
    generated_s = time.perf_counter() - started
    read_all(paths[0])  # warm the page cache and the imports
    result: dict[str, Any] = {
        "pictures": len(paths),
        "mean_picture_mb": round(sum(p.stat().st_size for p in paths) / len(paths) / 1e6, 2),
        "generate_s": round(generated_s, 2),
        "read_floor_per_s": round(rate(read_all, paths, rounds=rounds), 1),
        "embedded_per_s": round(rate(embedded, paths * 20, rounds=rounds), 1),
        "fallback_per_s": round(rate(fallback, paths, rounds=rounds), 2),
        "pillow_draft_per_s": round(rate(pillow_draft, paths, rounds=rounds), 2),
    }
    result["embedded_target_per_s"] = EMBEDDED_TARGET
    result["embedded_target_met"] = result["embedded_per_s"] >= EMBEDDED_TARGET
    result["fallback_target"] = f"fallback_per_s >= pillow_draft_per_s / {FALLBACK_RATIO}"
    result["fallback_target_met"] = (
        result["fallback_per_s"] >= result["pillow_draft_per_s"] / FALLBACK_RATIO
    )
    result["import_pictures"] = imports
    result.update(catalog_ms(imports))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
