"""Metadata from EXIF, read with a small bounds-checked TIFF reader that never trusts offsets.

``read_exif(tiff)`` returns a flat map of scalars that passes ``protocol.messages.check_metadata``.
Keys (each present only when the file says it):

=====================  ======  ==========================================================
make, model, lens      str     camera maker, camera model, lens model
capture_time           float   epoch seconds of DateTimeOriginal (see ``capture_time``)
capture_time_text      str     DateTimeOriginal as written, with its offset when given
exposure_time          float   seconds
exposure_text          str     e.g. "1/125" or "2.5"
f_number               float   aperture, e.g. 2.8
iso                    int     ISO speed
metering_mode          str     in words: "average", "center-weighted average", "spot", ...
focal_length           float   millimetres
focal_length_35mm      int     35 mm equivalent, millimetres
width, height          int     pixels as stored (before orientation); the decoder's
                               frame size wins over EXIF's PixelX/YDimension
orientation            int     EXIF orientation 1-8 (1: as stored)
gps_latitude           float   degrees, north positive
gps_longitude          float   degrees, east positive
gps_altitude           float   metres above sea level (negative below)
=====================  ======  ==========================================================

Strings are trimmed, stripped of NULs and control characters and cut to 512 characters.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

MetadataValue = str | int | float | bool | None

MAX_TEXT: Final = 512
MAX_ENTRIES: Final = 1024  # per IFD; real cameras write a few hundred at most
MAX_VALUE_BYTES: Final = 1 << 20

_TYPE_SIZE: Final = {
    1: 1,
    2: 1,
    3: 2,
    4: 4,
    5: 8,
    6: 1,
    7: 1,
    8: 2,
    9: 4,
    10: 8,
    11: 4,
    12: 8,
    13: 4,
}
_TYPE_FORMAT: Final = {1: "B", 3: "H", 4: "I", 6: "b", 8: "h", 9: "i", 11: "f", 12: "d", 13: "I"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

METERING: Final = {
    0: "unknown",
    1: "average",
    2: "center-weighted average",
    3: "spot",
    4: "multi-spot",
    5: "pattern",
    6: "partial",
    255: "other",
}


@dataclass(frozen=True, slots=True)
class Entry:
    """One IFD entry: field type, value count and absolute position of the value bytes."""

    kind: int
    count: int
    at: int


class Tiff:
    """A TIFF structure inside ``data`` starting at ``base``; every read is bounds-checked.

    Offsets inside the structure are relative to ``base`` (as in EXIF's APP1 block)."""

    def __init__(self, data: bytes | memoryview, base: int = 0) -> None:
        self.data = data
        self.base = base
        order = bytes(data[base : base + 4])
        if order == b"II*\x00":
            self.endian = "<"
        elif order == b"MM\x00*":
            self.endian = ">"
        else:
            raise ValueError("not a TIFF header")
        self.first_ifd = self.u32(base + 4)

    def u32(self, at: int) -> int:
        if not 0 <= at <= len(self.data) - 4:
            return 0
        value: int = struct.unpack_from(self.endian + "I", self.data, at)[0]
        return value

    def ifd(self, offset: int) -> dict[int, Entry]:
        """The entries of the IFD at ``offset`` (relative); empty when it lies outside."""
        at = self.base + offset
        if offset <= 0 or at + 2 > len(self.data):
            return {}
        (count,) = struct.unpack_from(self.endian + "H", self.data, at)
        count = min(count, MAX_ENTRIES, (len(self.data) - at - 2) // 12)
        entries = {}
        for i in range(count):
            pos = at + 2 + 12 * i
            tag, kind, n = struct.unpack_from(self.endian + "HHI", self.data, pos)
            size = _TYPE_SIZE.get(kind)
            if size is None or n == 0 or n * size > MAX_VALUE_BYTES:
                continue
            value_at = pos + 8 if n * size <= 4 else self.base + self.u32(pos + 8)
            if value_at + n * size > len(self.data):
                continue
            entries[tag] = Entry(kind, n, value_at)
        return entries

    def next_ifd(self, offset: int) -> int:
        """The offset of the IFD chained after the one at ``offset``, 0 when none."""
        at = self.base + offset
        if offset <= 0 or at + 2 > len(self.data):
            return 0
        (count,) = struct.unpack_from(self.endian + "H", self.data, at)
        return self.u32(at + 2 + 12 * count)

    def numbers(self, entry: Entry | None) -> tuple[float, ...]:
        """Numeric values; rationals as floats (a zero denominator gives NaN)."""
        if entry is None:
            return ()
        if entry.kind in (5, 10):
            fmt = self.endian + ("I" if entry.kind == 5 else "i") * (2 * entry.count)
            raw = struct.unpack_from(fmt, self.data, entry.at)
            return tuple(n / d if d else math.nan for n, d in zip(raw[::2], raw[1::2], strict=True))
        code = _TYPE_FORMAT.get(entry.kind)
        if code is None:
            return ()
        return tuple(struct.unpack_from(f"{self.endian}{entry.count}{code}", self.data, entry.at))

    def integer(self, entry: Entry | None) -> int | None:
        values = self.numbers(entry)
        if not values or entry is None or entry.kind in (5, 10, 11, 12):
            return None
        return int(values[0])

    def text(self, entry: Entry | None) -> str | None:
        if entry is None or entry.kind not in (1, 2, 7):
            return None
        raw = bytes(self.data[entry.at : entry.at + entry.count])
        return clean_text(raw.split(b"\0", 1)[0].decode("utf-8", "replace"))


def clean_text(text: str) -> str | None:
    """Trimmed, without control characters, at most 512 characters; None when empty."""
    text = _CONTROL.sub("", text).strip()[:MAX_TEXT].strip()
    return text or None


@dataclass(frozen=True, slots=True)
class Exif:
    """What EXIF says: flat metadata, the capture time and the orientation (1 when unknown)."""

    metadata: dict[str, MetadataValue] = field(default_factory=dict)
    capture_time: float | None = None
    orientation: int = 1


def read_exif(tiff: Tiff) -> Exif:
    """Read IFD0, the Exif IFD and the GPS IFD; broken or missing fields are simply left out."""
    ifd0 = tiff.ifd(tiff.first_ifd)
    exif = tiff.ifd(tiff.u32(ifd0[0x8769].at)) if 0x8769 in ifd0 else {}
    gps = tiff.ifd(tiff.u32(ifd0[0x8825].at)) if 0x8825 in ifd0 else {}
    out: dict[str, MetadataValue] = {}

    def put(key: str, value: MetadataValue) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            return
        if value is not None:
            out[key] = value

    put("make", tiff.text(ifd0.get(0x010F)))
    put("model", tiff.text(ifd0.get(0x0110)))
    put("lens", tiff.text(exif.get(0xA434)))
    taken = tiff.text(exif.get(0x9003)) or tiff.text(ifd0.get(0x0132))
    offset = tiff.text(exif.get(0x9011))
    when = capture_time(taken, offset)
    put("capture_time", when)
    if when is not None and taken is not None:
        put("capture_time_text", f"{taken} {offset}" if offset else taken)
    exposure = _first(tiff.numbers(exif.get(0x829A)))
    if exposure is not None and exposure > 0:
        put("exposure_time", exposure)
        put("exposure_text", f"1/{round(1 / exposure)}" if exposure < 1 else f"{exposure:g}")
    put("f_number", _first(tiff.numbers(exif.get(0x829D))))
    put("iso", tiff.integer(exif.get(0x8827)))
    metering = tiff.integer(exif.get(0x9207))
    if metering is not None:
        put("metering_mode", METERING.get(metering, "other"))
    put("focal_length", _first(tiff.numbers(exif.get(0x920A))))
    put("focal_length_35mm", tiff.integer(exif.get(0xA405)))
    put("width", tiff.integer(exif.get(0xA002)))
    put("height", tiff.integer(exif.get(0xA003)))
    orientation = tiff.integer(ifd0.get(0x0112))
    orientation = orientation if orientation is not None and 1 <= orientation <= 8 else 1
    if 0x0112 in ifd0:
        put("orientation", orientation)
    put("gps_latitude", _coordinate(tiff, gps.get(2), tiff.text(gps.get(1)), "S"))
    put("gps_longitude", _coordinate(tiff, gps.get(4), tiff.text(gps.get(3)), "W"))
    altitude = _first(tiff.numbers(gps.get(6)))
    if altitude is not None:
        below = tiff.integer(gps.get(5)) == 1
        put("gps_altitude", -altitude if below else altitude)
    return Exif(out, when, orientation)


def capture_time(taken: str | None, offset: str | None) -> float | None:
    """Epoch seconds of an EXIF "YYYY:MM:DD HH:MM:SS" time with an optional "+HH:MM" offset.

    Without an offset the time is naive camera-clock time; we read it as UTC, because the
    device cannot know the camera's zone and a fixed rule keeps ordering stable."""
    if taken is None:
        return None
    try:
        moment = datetime.strptime(taken[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    zone = UTC if offset is None else _zone(offset)
    return moment.replace(tzinfo=zone or UTC).timestamp()


def _zone(offset: str) -> timezone | None:
    match = re.fullmatch(r"([+-])(\d\d):(\d\d)", offset.strip())
    if match is None:
        return None
    minutes = int(match[2]) * 60 + int(match[3])
    if minutes >= 24 * 60:
        return None
    return timezone(timedelta(minutes=-minutes if match[1] == "-" else minutes))


def _first(values: tuple[float, ...]) -> float | None:
    return float(values[0]) if values and math.isfinite(values[0]) else None


def _coordinate(tiff: Tiff, entry: Entry | None, ref: str | None, negative: str) -> float | None:
    parts = tiff.numbers(entry)
    if len(parts) != 3 or not all(math.isfinite(p) for p in parts):
        return None
    degrees = parts[0] + parts[1] / 60 + parts[2] / 3600
    if not 0 <= degrees <= 180:
        return None
    return round(-degrees if ref == negative else degrees, 7)


def merged(
    metadata: Mapping[str, MetadataValue], **extra: MetadataValue
) -> dict[str, MetadataValue]:
    """``metadata`` with ``extra`` laid over it, dropping None values."""
    out = dict(metadata)
    out.update({k: v for k, v in extra.items() if v is not None})
    return out
