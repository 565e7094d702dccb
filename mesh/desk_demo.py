"""A small mesh in one process, for `cammesh desk --demo`, the desk screenshot and the desk tests.

``make_mesh`` creates cards that are already paired with one another (every card
pins every other certificate, the same mesh id); ``runtime_for`` wires one card
to a Runtime on loopback.  Real cards, real TLS, real sample JPEGs: only the
pairing ceremony (SPAKE2 codes) is skipped.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mesh.card_commands import init_card
from mesh.identity import Identity
from mesh.pairing import Membership, PinnedPeer, save_membership
from mesh.runtime import Address, Runtime
from protocol.config import NodeConfig, Policy
from protocol.messages import Role
from storage.card import Card


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One device to create: its card folder name, device name, role and capacity."""

    name: str
    role: Role
    capacity: int = 2 * 1024**3


def make_mesh(folder: Path, devices: Sequence[DeviceSpec]) -> list[Path]:
    """Create one card per device under ``folder``, all paired with each other; returns their paths."""
    paths: list[Path] = []
    pins: list[PinnedPeer] = []
    for spec in devices:
        path = folder / spec.name
        init_card(path, name=spec.name, capacity=spec.capacity, role=spec.role.value, reserve=None).close()
        identity = Identity.load(path)
        pins.append(PinnedPeer.from_cert(identity.cert_pem, name=spec.name, role=spec.role.value))
        paths.append(path)
    mesh_id = secrets.token_hex(16)
    for path, me in zip(paths, pins, strict=True):
        save_membership(path, Membership(mesh_id, tuple(p for p in pins if p is not me)))
    return paths


def runtime_for(
    card_path: Path,
    card: Card,
    *,
    listen: Address | None = None,
    peers: Iterable[Address] = (),
    rate_limit: float | None = None,
    policy: Policy = Policy.ALL,
) -> Runtime:
    """A Runtime for an open card on loopback (any free port unless ``listen`` says)."""
    config = NodeConfig(name=card.name, role=Role(card.role), default_policy=policy,
                        share_marks=True)
    return Runtime(
        card_path=card_path,
        card=card,
        identity=Identity.load(card_path),
        config=config,
        listen=listen or Address("127.0.0.1", 0),
        static_peers=list(peers),
        rate_limit=rate_limit,
    )


def write_demo_pictures(folder: Path, count: int, *, seed: int, start_time: float, side: int = 1024) -> list[Path]:
    """``count`` JPEGs of a few hundred kB with full EXIF: big enough that a rate-limited
    transfer shows its progress, small enough to make in a fraction of a second each."""
    from PIL import Image

    from storage.samples import encode_sample, sample_exif, write_sample_jpegs

    small = write_sample_jpegs(folder / ".small", count, seed=seed, start_time=start_time)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, source in enumerate(small):
        with Image.open(source) as image:
            picture = image.convert("RGB").resize((side, side * 3 // 4))
        grain = Image.effect_noise(picture.size, 48).convert("RGB")
        picture = Image.blend(picture, grain, 0.18)  # film grain: photographs compress like this
        info = sample_exif(index, seed=seed, start_time=start_time)
        path = folder / f"IMG_{seed}_{index:04d}.JPG"
        path.write_bytes(encode_sample(picture, info, quality=88))
        source.unlink()
        paths.append(path)
    (folder / ".small").rmdir()
    return paths


def fill_thumbnails(card_path: Path, count: int, origins: Sequence[str]) -> list[str]:
    """Write ``count`` peer thumbnails (no originals) into a closed card's catalog, in one
    transaction; returns their ids, oldest first.  For measuring a crowded desk page."""
    import hashlib
    import io

    from PIL import Image

    from protocol.store import ImageRecord, Where
    from storage.catalog import CATALOG_NAME, SqliteCatalog

    thumbs = []
    for shade in range(8):
        out = io.BytesIO()
        Image.new("RGB", (160, 120), (30 * shade, 120, 200 - 20 * shade)).save(out, "JPEG")
        thumbs.append(out.getvalue())
    ids = []
    catalog = SqliteCatalog(card_path / CATALOG_NAME)
    try:
        with catalog.transaction():
            for n in range(count):
                image_id = hashlib.sha256(f"picture {n}".encode()).hexdigest()
                catalog.insert_image(ImageRecord(
                    image_id=image_id, origin=origins[n % len(origins)], seq=n // len(origins) + 1,
                    name=f"IMG_{n:05d}.JPG", size=5_000_000 + n, mime="image/jpeg",
                    capture_time=1_700_000_000.0 + n,
                    metadata={"exposure_text": "1/250", "f_number": 4.0, "iso": 200,
                              "metering_mode": "spot"},
                    thumbnail=thumbs[n % len(thumbs)], where=Where.ABSENT,
                    thumbnail_at=1_700_100_000.0), thumbnail_source="peer")
                ids.append(image_id)
    finally:
        catalog.close()
    return ids
