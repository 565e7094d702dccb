"""The stores every contract test runs against: the real card and the simulator's in-memory twin."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from protocol.store import ImageRecord, Store

OWN_DEVICE = "a" * 64
PEER = "b" * 64
OTHER_PEER = "c" * 64

MakeStore = Callable[..., Any]


@pytest.fixture(params=["card", "memory"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeStore]:
    """``make_store(capacity=...)`` opens a fresh, empty store of the parametrised kind."""
    opened: list[Any] = []

    def make(capacity: int = 10**6, *, device_id: str = OWN_DEVICE) -> Any:
        if request.param == "card":
            from storage.card import Card

            store: Any = Card.create(
                tmp_path / f"card{len(opened)}", device_id=device_id, name="contract",
                capacity=capacity, reserve=0,
            )
        else:
            from sim.memstore import MemoryStore  # imported lazily: it may not exist yet

            store = MemoryStore(device_id, capacity)
        opened.append(store)
        return store

    yield make
    for store in opened:
        close = getattr(store, "close", None)
        if close is not None:
            close()


def add_local(
    store: Store, data: bytes, *, name: str = "IMG_0001.JPG", now: float = 1.0, **extra: Any
) -> ImageRecord:
    """Put a picture captured on this device into either store, through its own capture call."""
    record: ImageRecord = store.add_local(data, name=name, now=now, **extra)  # type: ignore[attr-defined]
    return record


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
