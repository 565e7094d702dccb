"""The editor's marks: the value's limits, the merge rule's laws, and marks kept by the card."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage import catalog as catalog_module
from storage.card import Card
from storage.errors import InvalidMarks, NotFound
from storage.marks import (
    DEFAULT_COLOR_LABELS,
    FIELDS,
    MAX_TEXT,
    Marks,
    Stamped,
    marks_of,
    merge,
    newer,
)

DEVICES = ["a" * 64, "b" * 64, "c" * 64]

# --- the value -------------------------------------------------------------------------------


def test_marks_refuse_what_a_sidecar_cannot_carry() -> None:
    assert Marks(rating=5, color=8, tagged=True, caption="line one\nline two").rating == 5
    for bad in (dict(rating=6), dict(rating=True), dict(color=0), dict(color=9),
                dict(tagged=1), dict(caption="x" * (MAX_TEXT + 1)), dict(headline="a\nb"),
                dict(caption="bell\x07"), dict(credit="nul\x00"), dict(keywords=("",)),
                dict(keywords=("ok", "tab\there")), dict(keywords=tuple(map(str, range(65))))):
        with pytest.raises(ValueError):
            Marks(**bad)  # type: ignore[arg-type]


def test_changed_names_the_unknown_field_and_takes_a_list_of_keywords() -> None:
    with pytest.raises(ValueError, match="no mark is called stars"):
        Marks().changed(stars=3)
    assert Marks().changed(keywords=["news", "rain"]).keywords == ("news", "rain")


def test_markup_is_kept_as_text() -> None:
    caption = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
    assert Marks(caption=caption).caption == caption


# --- the merge rule ----------------------------------------------------------------------------

values = {
    "rating": st.none() | st.integers(0, 5),
    "color": st.none() | st.integers(1, 8),
    "tagged": st.booleans(),
    "caption": st.text(max_size=8),
    "keywords": st.lists(st.sampled_from(["a", "b", "news"]), max_size=3).map(tuple),
}
stamps = st.builds(lambda t, d: (t, d), st.integers(0, 6).map(float), st.sampled_from(DEVICES))


@st.composite
def sides(draw: st.DrawFn) -> dict[str, Stamped]:
    out = {}
    for name in draw(st.lists(st.sampled_from(sorted(values)), unique=True)):
        at, device = draw(stamps)
        out[name] = Stamped(draw(values[name]), at, device)
    return out


@given(sides(), sides())
def test_merge_is_commutative(a: dict[str, Stamped], b: dict[str, Stamped]) -> None:
    assert merge(a, b) == merge(b, a)


@given(sides(), sides(), sides())
def test_merge_is_associative(a: dict[str, Stamped], b: dict[str, Stamped], c: dict[str, Stamped]) -> None:
    assert merge(merge(a, b), c) == merge(a, merge(b, c)) == merge(a, b, c)


@given(sides(), sides())
def test_merge_is_idempotent(a: dict[str, Stamped], b: dict[str, Stamped]) -> None:
    assert merge(a, a) == a
    assert merge(merge(a, b), b) == merge(a, b)


@given(st.lists(sides(), min_size=1, max_size=4))
def test_merge_loses_no_newer_mark(all_sides: list[dict[str, Stamped]]) -> None:
    merged = merge(*all_sides)
    for side in all_sides:
        for name, mark in side.items():
            assert (merged[name].at, merged[name].device) >= (mark.at, mark.device)
    assert set(merged) == {name for side in all_sides for name in side}


@given(sides(), sides())
def test_newer_is_what_a_merge_would_change(a: dict[str, Stamped], b: dict[str, Stamped]) -> None:
    assert merge(a, newer(a, b)) == merge(a, b)
    assert newer(merge(a, b), b) == {}


def test_two_desks_that_marked_apart_agree_after_exchanging() -> None:
    """A partition: desk A rates at t=10, desk B rates at t=12 and tags at t=11: B's rating is
    newer, both keep B's rating and tag and A's colour."""
    a = {"rating": Stamped(2, 10.0, DEVICES[0]), "color": Stamped(3, 10.0, DEVICES[0])}
    b = {"rating": Stamped(5, 12.0, DEVICES[1]), "tagged": Stamped(True, 11.0, DEVICES[1])}
    assert marks_of(merge(a, b)) == marks_of(merge(b, a)) == Marks(rating=5, color=3, tagged=True)


# --- marks kept by the card ---------------------------------------------------------------------


@pytest.fixture
def card(tmp_path: Path) -> Iterator[Card]:
    with Card.create(tmp_path / "card", device_id=DEVICES[0], name="desk", capacity=10**8) as card:
        yield card


def test_marks_persist_per_field_with_their_stamps(card: Card, tmp_path: Path) -> None:
    picture = card.add_local(b"a picture", name="a.jpg", now=1.0)
    assert card.marks(picture.image_id) == Marks()
    card.set_marks(picture.image_id, rating=4, tagged=True, now=100.0)
    card.set_marks(picture.image_id, caption="Rain <b>on</b> the pitch", keywords=["rain"], now=101.0)
    card.close()
    with Card.open(tmp_path / "card") as again:
        assert again.marks(picture.image_id) == Marks(
            rating=4, tagged=True, caption="Rain <b>on</b> the pitch", keywords=("rain",))
        stamped = again.stamped_marks(picture.image_id)
        assert stamped["rating"] == Stamped(4, 100.0, DEVICES[0])
        assert stamped["caption"].at == 101.0
        assert set(stamped) == {"rating", "tagged", "caption", "keywords"}
        assert again.all_marks() == {picture.image_id: again.marks(picture.image_id)}


def test_a_change_on_a_slow_clock_still_wins_over_the_last_stamp(card: Card) -> None:
    picture = card.add_local(b"a picture", name="a.jpg", now=1.0)
    card.merge_marks(picture.image_id, {"rating": Stamped(1, 500.0, DEVICES[2])})
    card.set_marks(picture.image_id, rating=3, now=400.0)  # this clock is behind the other's
    assert card.marks(picture.image_id).rating == 3
    assert card.stamped_marks(picture.image_id)["rating"].at > 500.0
    card.close()


def test_a_bad_mark_changes_nothing_and_says_why(card: Card) -> None:
    picture = card.add_local(b"a picture", name="a.jpg", now=1.0)
    card.set_marks(picture.image_id, rating=2, now=5.0)
    with pytest.raises(InvalidMarks, match="0-5 stars"):
        card.set_marks(picture.image_id, rating=7, tagged=True)
    with pytest.raises(InvalidMarks, match="no mark is called"):
        card.set_marks(picture.image_id, flavour="sour")
    with pytest.raises(NotFound):
        card.set_marks("e" * 64, rating=1)
    assert card.marks(picture.image_id) == Marks(rating=2)
    card.close()


def test_merged_marks_keep_the_newest_per_field_and_report_what_changed(card: Card) -> None:
    picture = card.add_local(b"a picture", name="a.jpg", now=1.0)
    card.set_marks(picture.image_id, rating=2, color=1, now=10.0)
    theirs = {"rating": Stamped(5, 12.0, DEVICES[1]), "color": Stamped(4, 9.0, DEVICES[1])}
    assert card.merge_marks(picture.image_id, theirs) == {"rating": theirs["rating"]}
    assert card.marks(picture.image_id) == Marks(rating=5, color=1)
    assert card.merge_marks(picture.image_id, theirs) == {}
    with pytest.raises(InvalidMarks):
        card.merge_marks(picture.image_id, {"rating": Stamped(9, 99.0, DEVICES[1])})
    card.close()


def test_colour_labels_start_as_photo_mechanics_and_can_be_renamed(card: Card, tmp_path: Path) -> None:
    assert card.color_labels() == DEFAULT_COLOR_LABELS
    card.set_color_label(2, "Front page", now=3.0)
    for bad in ((0, "x"), (9, "x"), (1, ""), (1, "a\x1bb"), (1, "x" * 65)):
        with pytest.raises(InvalidMarks):
            card.set_color_label(*bad)
    card.close()
    with Card.open(tmp_path / "card") as again:
        assert again.color_labels() == {**DEFAULT_COLOR_LABELS, 2: "Front page"}


def test_a_card_from_before_marks_upgrades_with_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "card"
    monkeypatch.setattr(catalog_module, "MIGRATIONS", catalog_module.MIGRATIONS[:4])
    with Card.create(path, device_id=DEVICES[0], name="cam", capacity=10**8) as old:
        picture = old.add_local(b"an old picture", name="a.jpg", now=1.0)
        assert old._catalog.version == 4
    monkeypatch.undo()
    with Card.open(path) as card:
        assert card._catalog.version == len(catalog_module.MIGRATIONS)
        assert card.marks(picture.image_id) == Marks()
        assert card.set_marks(picture.image_id, color=6).color == 6


def test_every_field_round_trips(card: Card) -> None:
    picture = card.add_local(b"a picture", name="a.jpg", now=1.0)
    full = Marks(rating=0, color=8, tagged=True, caption="c", headline="h", credit="AP",
                 keywords=("x", "y"))
    card.set_marks(picture.image_id, **{name: getattr(full, name) for name in FIELDS})
    assert card.marks(picture.image_id) == full
    assert full.as_json()["keywords"] == ["x", "y"]
    card.close()


def test_marks_on_several_pictures_are_all_or_nothing(card: Card) -> None:
    a = card.add_local(b"picture a", name="a.jpg", now=1.0).image_id
    b = card.add_local(b"picture b", name="b.jpg", now=1.0).image_id
    assert card.set_marks_of([a, b], tagged=True, now=3.0) == {a: Marks(tagged=True), b: Marks(tagged=True)}
    with pytest.raises(NotFound):
        card.set_marks_of([a, "e" * 64], rating=2)
    with pytest.raises(InvalidMarks):
        card.set_marks_of([a, b], rating=9)
    assert card.marks(a) == card.marks(b) == Marks(tagged=True)
