"""Human sizes: ``32GB``, ``512MiB``, ``1.5 GB``, ``1000000`` (bytes).

Decimal units are powers of 1000 (GB = 10**9), binary ones powers of 1024
(GiB = 2**30), as disk makers and operating systems respectively use them.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from storage.errors import BadSize

_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}

_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*\Z")


def parse_size(text: str) -> int:
    """Bytes in ``text``; raises BadSize naming the accepted forms when it is not a size."""
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS:
        raise BadSize(
            f"{text!r} is not a size: write a number with an optional unit, "
            "such as 32GB, 512MiB, 1.5 GB or 1000000 (bytes)"
        )
    try:
        value = Decimal(match.group(1)) * _UNITS[unit]
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
        raise BadSize(f"{text!r} is not a size") from exc
    if value != value.to_integral_value():
        raise BadSize(f"{text!r} is not a whole number of bytes")
    return int(value)


def format_size(size: int) -> str:
    """A short decimal rendering (``12.3 MB``), the way a card's label states its size."""
    if size < 0:
        raise ValueError(f"a size cannot be negative: {size}")
    if size < 1000:
        return f"{size} B"
    value = float(size)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000
        if value < 999.95 or unit == "TB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover
