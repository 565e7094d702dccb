"""An editor's marks on one picture: rating, colour class, tag and caption fields.

A value, nothing more: the catalog stores it (per field, with the time and device of the
last change, so that marks made on two devices merge by last writer wins), the desk page
edits it, and export writes it to an XMP sidecar that Photo Mechanic, Lightroom and exiftool
read.  ``None`` means "never set", which an XMP writer leaves out rather than writing a zero.

The merge rule (``merge``): per picture and per field, the mark with the greatest stamp
(time, device id) wins; equal stamps (one device never stamps two values alike) fall back on
the value's canonical JSON, so that the merge is a pure function: commutative, associative
and idempotent, and no mark newer than the one kept is ever lost.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from typing import Final

from protocol.store import MarkValue, Stamped, StampedMarks, canonical_mark

__all__ = [
    "COLOR_CLASSES", "DEFAULT_COLOR_LABELS", "FIELDS", "MAX_KEYWORDS", "MAX_LABEL",
    "MAX_SHORT_TEXT", "MAX_TEXT", "RATINGS", "MarkValue", "Marks", "Stamped", "StampedMarks",
    "check_color_class", "check_label", "check_stamped", "decode_value", "encode_value",
    "labels_of", "marks_of", "merge", "newer", "stamp_changes",
]

RATINGS: Final = range(0, 6)
"""0-5 stars, as ``xmp:Rating`` counts them."""

COLOR_CLASSES: Final = range(1, 9)
"""Photo Mechanic's eight colour classes; each has a label an editor can rename."""

DEFAULT_COLOR_LABELS: Final[dict[int, str]] = {
    1: "Winner",
    2: "Winner alt",
    3: "Superior",
    4: "Superior alt",
    5: "Typical",
    6: "Typical alt",
    7: "Extra",
    8: "Extra alt",
}
"""Photo Mechanic's default colour-class names."""

MAX_TEXT: Final = 2000
"""Longest caption (characters); headline, credit and a keyword have shorter limits."""

MAX_SHORT_TEXT: Final = 256

MAX_KEYWORDS: Final = 64
"""Most keywords on one picture."""

MAX_LABEL: Final = 64
"""Longest colour-class label (characters)."""

# C0 and C1 control characters, DEL, and the two non-characters XML 1.0 refuses: an XMP
# sidecar cannot carry them, so a mark never holds one.  A caption may break lines and tab.
_CONTROL: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff]")
_LINE_BREAK: Final = re.compile("[\t\n\r]")



@dataclass(frozen=True, slots=True)
class Marks:
    """What an editor decided about one picture.  Every field may be unset."""

    rating: int | None = None
    color: int | None = None
    tagged: bool = False
    caption: str = ""
    headline: str = ""
    credit: str = ""
    keywords: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.rating is not None and (type(self.rating) is not int or self.rating not in RATINGS):
            raise ValueError(f"a rating is 0-5 stars, not {self.rating!r}")
        if self.color is not None and (type(self.color) is not int or self.color not in COLOR_CLASSES):
            raise ValueError(f"a colour class is 1-8, not {self.color!r}")
        if type(self.tagged) is not bool:
            raise ValueError(f"tagged is true or false, not {self.tagged!r}")
        if type(self.keywords) is not tuple:
            raise ValueError("keywords are a tuple of words")
        _check_text("caption", self.caption, MAX_TEXT, lines=True)
        for name in ("headline", "credit"):
            _check_text(name, getattr(self, name), MAX_SHORT_TEXT)
        if len(self.keywords) > MAX_KEYWORDS:
            raise ValueError(f"a picture has at most {MAX_KEYWORDS} keywords")
        for word in self.keywords:
            _check_text("keyword", word, MAX_SHORT_TEXT)
        if any(not word.strip() for word in self.keywords):
            raise ValueError("a keyword is not empty")

    def changed(self, **values: object) -> Marks:
        """These marks with some fields changed, validated; ValueError names a bad one."""
        unknown = set(values) - set(FIELDS)
        if unknown:
            raise ValueError(f"no mark is called {', '.join(sorted(unknown))}; marks are {', '.join(FIELDS)}")
        if isinstance(values.get("keywords"), list):
            values["keywords"] = tuple(values["keywords"])  # type: ignore[arg-type]
        return replace(self, **values)  # type: ignore[arg-type]

    def as_json(self) -> dict[str, MarkValue | list[str]]:
        """The marks as JSON-ready values (keywords as a list)."""
        return {name: list(v) if isinstance(v := getattr(self, name), tuple) else v for name in FIELDS}


FIELDS: Final[tuple[str, ...]] = tuple(f.name for f in fields(Marks))
"""The names of the marks, in the order the desk and export list them."""


def _check_text(name: str, text: object, limit: int, *, lines: bool = False) -> None:
    if type(text) is not str:
        raise ValueError(f"a {name} is text, not {text!r}")
    if len(text) > limit:
        raise ValueError(f"a {name} is at most {limit} characters, not {len(text)}")
    if _CONTROL.search(text) or (not lines and _LINE_BREAK.search(text)):
        raise ValueError(f"a {name} may not hold control characters (XMP cannot carry them)")
    if any(unicodedata.category(c) == "Cs" for c in text):
        raise ValueError(f"a {name} may not hold a lone surrogate")


def check_label(text: object) -> str:
    """A colour-class label, validated: ValueError says why it is refused."""
    _check_text("colour label", text, MAX_LABEL)
    assert isinstance(text, str)
    if not text.strip():
        raise ValueError("a colour label is not empty")
    return text


def check_color_class(number: object) -> int:
    if type(number) is not int or number not in COLOR_CLASSES:
        raise ValueError(f"a colour class is 1-8, not {number!r}")
    return number


# --- marks that travel: one stamped value per field, merged by last writer wins -----------


# Stamped, StampedMarks and the canonical JSON live in protocol.store: marks travel (protocol/marks.py).


def encode_value(value: MarkValue) -> str:
    """A field's value as canonical JSON (how the catalog stores it)."""
    return canonical_mark(value)


def decode_value(field: str, text: str) -> MarkValue:
    value = json.loads(text)
    return tuple(value) if field == "keywords" else value


def merge(*sides: StampedMarks) -> dict[str, Stamped]:
    """Last writer wins per field over any number of sides: a pure function, commutative,
    associative and idempotent; a field's result is the newest of its inputs."""
    out: dict[str, Stamped] = {}
    for side in sides:
        for name, mark in side.items():
            kept = out.get(name)
            if kept is None or mark.order() > kept.order():
                out[name] = mark
    return out


def newer(mine: StampedMarks, theirs: StampedMarks) -> dict[str, Stamped]:
    """The fields of ``theirs`` that would change ``mine`` in a merge (what to store)."""
    merged = merge(mine, theirs)
    return {name: mark for name, mark in merged.items() if mine.get(name) != mark}


def check_stamped(stamped: StampedMarks) -> None:
    """ValueError unless every field of marks from another device is one a card keeps."""
    for name, mark in stamped.items():
        if name not in FIELDS:
            raise ValueError(f"no mark is called {name!r}; marks are {', '.join(FIELDS)}")
        Marks().changed(**{name: mark.value})
        if type(mark.at) is not float or not math.isfinite(mark.at) or type(mark.device) is not str:
            raise ValueError(f"the {name} mark's stamp is not a (time, device id)")


def marks_of(stamped: StampedMarks) -> Marks:
    """The value an editor sees; a stored field the value refuses is left at its default."""
    values = {name: mark.value for name, mark in stamped.items() if name in FIELDS}
    try:
        return Marks(**values)  # type: ignore[arg-type]
    except ValueError:
        marks = Marks()
        for name, value in values.items():
            try:
                marks = marks.changed(**{name: value})
            except ValueError:
                continue
        return marks


def stamp_changes(
    before: Marks, after: Marks, mine: StampedMarks, *, now: float, device: str
) -> dict[str, Stamped]:
    """The stamped fields that make ``after`` from ``before``: stamped ``now`` by ``device``,
    but always after the field's last stamp, so a slow clock cannot lose the editor's change."""
    out: dict[str, Stamped] = {}
    for name in FIELDS:
        value = getattr(after, name)
        if value == getattr(before, name):
            continue  # unchanged: its stamp stays, so an older edit elsewhere still loses
        last = mine.get(name)
        at = now if last is None or now > last.at else math.nextafter(last.at, math.inf)
        out[name] = Stamped(value, at, device)
    return out


def labels_of(stamped: Iterable[tuple[int, str]]) -> dict[int, str]:
    """Every colour class's label: the default, overlaid by the ones an editor set."""
    labels = dict(DEFAULT_COLOR_LABELS)
    labels.update(stamped)
    return labels
