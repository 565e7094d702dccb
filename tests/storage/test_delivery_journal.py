"""The delivery journal: once queued, once delivered, across reopening the file."""

from __future__ import annotations

from pathlib import Path

from storage.delivery_journal import DeliveryJournal, DeliveryState

T = "ftp://u@h:21/in"


def test_a_picture_is_queued_once_per_target_and_names_stay_unique(tmp_path: Path) -> None:
    j = DeliveryJournal.beside(tmp_path)
    assert j.queue("a" * 64, T, "IMG.jpg", 1.0)
    assert not j.queue("a" * 64, T, "IMG.jpg", 2.0)
    assert j.queue("b" * 64, T, "IMG.jpg", 3.0)  # another camera's IMG.jpg
    assert j.queue("a" * 64, "sftp://u@h:22/", "IMG.jpg", 3.0)
    assert [d.remote_name for d in j.entries(T)] == ["IMG.jpg", "IMG-2.jpg"]
    j.close()


def test_progress_failures_and_delivery_survive_reopening(tmp_path: Path) -> None:
    j = DeliveryJournal.beside(tmp_path)
    j.queue("a" * 64, T, "a.jpg", 1.0)
    j.queue("b" * 64, T, "b.jpg", 2.0)
    j.sending("a" * 64, T, size=100, sent=40)
    j.failed("a" * 64, T, "nobody answers", retry_at=50.0)
    assert j.due(T, 10.0).image_id == "b" * 64  # a waits for its retry time
    j.delivered("b" * 64, T, 11.0)
    j.close()
    j = DeliveryJournal.beside(tmp_path)
    a = j.get("a" * 64, T)
    assert (a.state, a.sent, a.size, a.attempts, a.error) == (DeliveryState.SENDING, 40, 100, 1, "nobody answers")
    assert j.due(T, 10.0) is None and j.due(T, 50.0).image_id == "a" * 64
    assert j.get("b" * 64, T).state is DeliveryState.DELIVERED
    assert not j.queue("b" * 64, T, "b.jpg", 99.0)  # delivered: never queued again
    assert j.next_due_at(T) == 50.0
    j.close()


def test_only_a_delivery_not_yet_begun_can_be_withdrawn(tmp_path: Path) -> None:
    j = DeliveryJournal.beside(tmp_path)
    j.queue("a" * 64, T, "a.jpg", 1.0)
    j.queue("b" * 64, T, "b.jpg", 1.0)
    j.sending("b" * 64, T, size=10, sent=0)
    assert j.withdraw("a" * 64, T) and j.get("a" * 64, T) is None
    assert not j.withdraw("b" * 64, T) and j.get("b" * 64, T) is not None
    assert j.queue("a" * 64, T, "a.jpg", 2.0)  # tagged again: queued again
    j.close()
