"""An editor's marks on one picture: rating, colour class, tag and caption fields.

A value, nothing more: the catalog stores it (per field, with the time and device of the
last change, so that marks made on two devices merge by last writer wins), the desk page
edits it, and export writes it to an XMP sidecar that Photo Mechanic, Lightroom and exiftool
read.  ``None`` means "never set", which an XMP writer leaves out rather than writing a zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

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
        if self.rating is not None and self.rating not in RATINGS:
            raise ValueError(f"a rating is 0-5 stars, not {self.rating!r}")
        if self.color is not None and self.color not in COLOR_CLASSES:
            raise ValueError(f"a colour class is 1-8, not {self.color!r}")
        if len(self.caption) > MAX_TEXT:
            raise ValueError(f"a caption is at most {MAX_TEXT} characters")
        for name in ("headline", "credit"):
            if len(getattr(self, name)) > MAX_SHORT_TEXT:
                raise ValueError(f"a {name} is at most {MAX_SHORT_TEXT} characters")
        if any(len(word) > MAX_SHORT_TEXT for word in self.keywords):
            raise ValueError(f"a keyword is at most {MAX_SHORT_TEXT} characters")
