"""A card's settings (device id, name, role, capacity, reserve), written once into its catalog."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from protocol.messages import Limits
from storage.catalog import CATALOG_NAME, SqliteCatalog
from storage.errors import CardExists, NotACard, StoreError
from storage.files import HEX64, fsync_dir
from storage.intake import display_name

ROLES: Final = ("camera", "desk")


def default_reserve(capacity: int) -> int:
    """Room kept back for the catalog and thumbnails: 1% of the card, at most 256 MiB."""
    return min(capacity // 100, 256 * 2**20)


def check_settings(*, name: str, capacity: int, role: str, reserve: int | None) -> int:
    """Raise StoreError unless these make a usable card; returns the reserve to use."""
    reserve = default_reserve(capacity) if reserve is None else reserve
    if role not in ROLES:
        raise StoreError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if not name or len(name) > Limits.MAX_NAME or display_name(name) != name:
        raise StoreError(f"card name {name!r} must be 1 to 255 printable characters, no slashes")
    if capacity <= 0 or not 0 <= reserve < capacity:
        raise StoreError(
            f"a capacity of {capacity} bytes with a reserve of {reserve} leaves no room: the "
            "capacity must be positive and the reserve smaller than it"
        )
    return reserve


def new_catalog(
    path: Path, *, device_id: str, name: str, capacity: int, role: str, reserve: int | None
) -> SqliteCatalog:
    """The catalog of a new, empty card in ``path`` (created if need be); CardExists if one is there."""
    reserve = check_settings(name=name, capacity=capacity, role=role, reserve=reserve)
    if not HEX64.match(device_id):
        raise StoreError(f"device id {device_id!r} is not 64 lowercase hex characters")
    if (path / CATALOG_NAME).exists():
        raise CardExists(f"{path} already holds a card; open it, or choose another folder")
    path.mkdir(parents=True, exist_ok=True)
    catalog = SqliteCatalog(path / CATALOG_NAME)
    catalog.set_settings({
        "format": "cammesh-card", "device_id": device_id, "name": name, "role": role,
        "capacity": str(capacity), "reserve": str(reserve),
    })
    fsync_dir(path)
    return catalog


def existing_catalog(path: Path) -> SqliteCatalog:
    """The catalog of the card in ``path``; NotACard if there is none, or it was never set up."""
    if not (path / CATALOG_NAME).is_file():
        raise NotACard(f"{path} is not a cammesh card (no {CATALOG_NAME}); create one with `cammesh init`")
    catalog = SqliteCatalog(path / CATALOG_NAME)
    if catalog.settings().get("format") != "cammesh-card":
        catalog.close()
        raise NotACard(f"{path} has a catalog but no card settings; it was never initialised")
    return catalog
