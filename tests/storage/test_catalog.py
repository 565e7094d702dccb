"""The catalog: WAL, versioned schema, round trips, one transaction per change."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.store import DispersalState, ImageRecord, Incoming, TransferState, Where
from storage import catalog as catalog_module
from storage.catalog import MIGRATIONS, SqliteCatalog
from storage.errors import CatalogTooNew, StoreError

ORIGIN = "d" * 64


def record(seq: int, *, image_id: str | None = None) -> ImageRecord:
    return ImageRecord(
        image_id=image_id or f"{seq:064x}",
        origin=ORIGIN,
        seq=seq,
        name=f"IMG_{seq}.JPG",
        size=1000 + seq,
        mime="image/jpeg",
        capture_time=1.5 * seq,
        metadata={"iso": 100, "make": "Acme", "flash": True, "gps": 1.25, "lens": None},
        thumbnail=b"\xff\xd8" + bytes(10),
        where=Where.LOCAL,
        thumbnail_at=None,
        original_at=3.0,
        wrapped_key=None,
    )


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[SqliteCatalog]:
    cat = SqliteCatalog(tmp_path / "catalog.sqlite")
    yield cat
    cat.close()


def test_a_new_catalog_is_wal_durable_and_at_the_latest_version(tmp_path: Path) -> None:
    cat = SqliteCatalog(tmp_path / "c.sqlite")
    cat.close()
    db = sqlite3.connect(tmp_path / "c.sqlite")
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        db.close()
    assert {
        "images",
        "transfers",
        "dispersion",
        "held",
        "reservations",
        "smaller",
        "partials",
    } <= tables


def test_synchronous_is_full(catalog: SqliteCatalog) -> None:
    assert catalog._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_migrations_run_in_order_from_an_older_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.sqlite"
    SqliteCatalog(path).close()
    extra = "CREATE TABLE later_feature (x INTEGER);"
    monkeypatch.setattr(catalog_module, "MIGRATIONS", (*MIGRATIONS, extra))
    cat = SqliteCatalog(path)
    try:
        assert cat.version == len(MIGRATIONS) + 1
        cat._db.execute("INSERT INTO later_feature (x) VALUES (1)")
    finally:
        cat.close()


def test_a_catalog_from_a_newer_cammesh_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    SqliteCatalog(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    db.commit()
    db.close()
    with pytest.raises(CatalogTooNew, match="upgrade cammesh"):
        SqliteCatalog(path)


def test_a_file_that_is_not_a_catalog_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match="cannot be read"):
        SqliteCatalog(path)


def test_images_round_trip_in_origin_seq_order(catalog: SqliteCatalog) -> None:
    for seq in (3, 1, 2):
        catalog.insert_image(record(seq), thumbnail_source="embedded")
    assert catalog.images() == [record(1), record(2), record(3)]
    assert catalog.image(record(2).image_id) == record(2)
    assert catalog.images_after(ORIGIN, 1) == [record(2), record(3)]
    assert catalog.next_seq(ORIGIN) == 4
    assert catalog.next_seq("e" * 64) == 1
    assert catalog.thumbnail_sources()[record(1).image_id] == "embedded"


def test_a_second_picture_claiming_a_taken_seq_is_refused(catalog: SqliteCatalog) -> None:
    catalog.insert_image(record(1), thumbnail_source=None)
    with pytest.raises(StoreError, match="already another picture"):
        catalog.insert_image(record(1, image_id="f" * 64), thumbnail_source=None)
    assert catalog.images() == [record(1)]


def test_a_failed_transaction_changes_nothing(catalog: SqliteCatalog) -> None:
    catalog.insert_image(record(1), thumbnail_source=None)
    with pytest.raises(RuntimeError), catalog.transaction():
        catalog.set_where(record(1).image_id, Where.DISPERSED, original_at=None)
        catalog.set_dispersion(record(1).image_id, ORIGIN, DispersalState.STORED, 5.0)
        raise RuntimeError("crash in the middle")
    got = catalog.image(record(1).image_id)
    assert got is not None and got.where is Where.LOCAL
    assert catalog.dispersion_list() == []


def test_state_tables_round_trip(catalog: SqliteCatalog) -> None:
    image_id = record(1).image_id
    catalog.set_transfer_state("p" * 64, image_id, TransferState.REQUESTED, 640, 80)
    assert catalog.transfer_state("p" * 64, image_id) is TransferState.REQUESTED
    assert catalog.transfer_request("p" * 64, image_id) == (640, 80)
    catalog.set_reservation(image_id, 500)
    catalog.set_partial(image_id, Incoming.HELD, 120)
    catalog.insert_smaller(image_id, 77, 4.0)
    assert catalog.reservations() == {image_id: 500}
    assert catalog.partials() == {(image_id, Incoming.HELD): 120}
    assert catalog.smaller() == {image_id: 77}
    catalog.delete_partial(image_id, Incoming.HELD)
    catalog.delete_reservation(image_id)
    catalog.delete_smaller(image_id)
    assert (catalog.partials(), catalog.reservations(), catalog.smaller()) == ({}, {}, {})


def test_the_catalog_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    cat = SqliteCatalog(path)
    cat.insert_image(record(1), thumbnail_source="decoded")
    cat.set_settings({"name": "cam"})
    cat.close()
    cat = SqliteCatalog(path)
    try:
        assert cat.images() == [record(1)]
        assert cat.settings() == {"name": "cam"}
    finally:
        cat.close()


def test_our_own_decisions_move_out_of_the_transfer_table_on_upgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Version 1 kept our user's decisions as transfer rows under our own device id."""
    path = tmp_path / "c.sqlite"
    me, peer = "e" * 64, "f" * 64
    monkeypatch.setattr(catalog_module, "MIGRATIONS", MIGRATIONS[:1])
    old = SqliteCatalog(path)
    old.set_settings({"device_id": me})
    old.set_transfer_state(me, "1" * 64, TransferState.REFUSED, None, None)
    old.set_transfer_state(me, "2" * 64, TransferState.REQUESTED, 800, 70)
    old.set_transfer_state(peer, "1" * 64, TransferState.REQUESTED, None, None)
    old.close()
    monkeypatch.setattr(catalog_module, "MIGRATIONS", MIGRATIONS)
    cat = SqliteCatalog(path)
    try:
        assert [(d.image_id, d.decision.value, d.max_side, d.quality) for d in cat.decisions()] == [
            ("1" * 64, "refused", None, None),
            ("2" * 64, "requested", 800, 70),
        ]
        assert cat.transfer_state(me, "1" * 64) is TransferState.UNTRANSMITTED
        assert cat.transfer_state(peer, "1" * 64) is TransferState.REQUESTED
    finally:
        cat.close()
