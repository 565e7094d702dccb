"""SIGKILL a real importing process at random moments; the card it leaves must be sound.

After each kill the card is reopened: every catalog row's original is complete and
hash-correct, nothing left over counts against capacity, and a final import finishes
the job with each file on the card exactly once.
"""

from __future__ import annotations

import hashlib
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from protocol.store import Where
from storage.card import Card, iter_card_files
from storage.samples import write_sample_jpegs
from tests.conftest import long_profile

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEVICE = "a" * 64
COMMANDS = (
    [sys.executable, "-m", "storage.importer"],
    [sys.executable, "-m", "mesh.cli", "import"],
)


def start_import(command: list[str], card: Path, source: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*command, str(card), str(source)], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def check_sound(card_dir: Path, sources: dict[str, int]) -> int:
    """The crash invariants; returns how many pictures the card lists."""
    with Card.open(card_dir) as card:
        records = card.images()
        for record in records:
            assert record.where is Where.LOCAL
            assert record.image_id in sources, "a row for bytes that were never imported"
            data = card.original_path(record.image_id).read_bytes()
            assert len(data) == record.size == sources[record.image_id]
            assert hashlib.sha256(data).hexdigest() == record.image_id
        on_disk = sum(f.stat().st_size for f in iter_card_files(card_dir))
        assert card.usage().used == on_disk == sum(r.size for r in records)
        assert list((card_dir / "tmp").iterdir()) == []
        assert sorted(r.seq for r in records) == list(range(1, len(records) + 1))
        return len(records)


def make_card(path: Path) -> Path:
    Card.create(path, device_id=DEVICE, name="crash", capacity=10**9, reserve=0).close()
    return path


def test_an_import_killed_at_random_moments_leaves_a_sound_card(tmp_path: Path) -> None:
    rng = random.Random(20261121)
    source = tmp_path / "pictures"
    write_sample_jpegs(source, 12, seed=11)
    for i in range(4):  # larger files, so that some kills land in the middle of a copy
        (source / f"BIG_{i}.JPG").write_bytes(random.Random(i).randbytes(3 * 1024 * 1024))
    sources = {
        hashlib.sha256(p.read_bytes()).hexdigest(): p.stat().st_size for p in source.iterdir()
    }

    started = time.monotonic()
    probe = start_import(COMMANDS[0], make_card(tmp_path / "probe"), source)
    assert probe.wait(timeout=300) == 0
    duration = time.monotonic() - started  # a whole import, interpreter start-up included

    kills = 40 if long_profile() else 6
    interrupted = 0
    card_dir = tmp_path / "card"
    for round_ in range(kills):
        if round_ % 3 == 0:  # a fresh card now and then, so that kills land on new pictures too
            card_dir = make_card(tmp_path / f"card{round_}")
        process = start_import(COMMANDS[round_ % len(COMMANDS)], card_dir, source)
        time.sleep(rng.uniform(0.2, 1.0) * duration)
        process.send_signal(signal.SIGKILL)
        interrupted += process.wait(timeout=60) == -signal.SIGKILL
        check_sound(card_dir, sources)
    assert interrupted, "no kill landed before its import finished: the test proved nothing"

    finish = start_import(COMMANDS[1], card_dir, source)
    assert finish.wait(timeout=300) == 0
    assert check_sound(card_dir, sources) == len(sources)
    with Card.open(card_dir) as card:
        assert card.recovered == []
