"""Exported file names: the rename template, and writing a file that never replaces another.

A template is text with fields in braces, e.g. ``{date}_{photographer}_{seq}``; the original's
extension is always kept.  The fields (``TEMPLATE_FIELDS``) come from the picture's metadata,
which a peer wrote, so every value is reduced to letters, digits, ``.``, ``-`` and ``_`` before
it becomes part of a name; no value can add a folder or hide the file.
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from protocol.store import ImageRecord
from storage.errors import StoreError

TEMPLATE_FIELDS: Final = {
    "date": "capture date, YYYYMMDD (the camera's clock when EXIF has it, else UTC)",
    "time": "capture time, HHMMSS",
    "camera": "camera model (or make), else the start of the sending device's id",
    "photographer": "the photographer an FTP camera account names, else 'unknown'",
    "seq": "this export's running number, 0001, 0002, ...",
    "name": "the original file name, without its extension",
    "id": "the first 12 characters of the image id",
}
MAX_NAME: Final = 180  # characters of a name before its extension and any "-2" suffix
_FIELD = re.compile(r"\{([^{}]*)\}")
_UNSAFE = re.compile(r"[^\w.\-]+")
_EXIF_TIME = re.compile(r"(\d{4}):(\d{2}):(\d{2}) (\d{2}):(\d{2}):(\d{2})")


class TemplateError(StoreError, ValueError):
    """A rename template names a field that does not exist."""


def check_template(template: str) -> None:
    """Raise TemplateError naming the first unknown field of ``template``."""
    for match in _FIELD.finditer(template):
        if match.group(1) not in TEMPLATE_FIELDS:
            known = ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
            raise TemplateError(f"the template field {{{match.group(1)}}} is unknown; use {known}")
    if "{" in _FIELD.sub("", template) or "}" in _FIELD.sub("", template):
        raise TemplateError("a template's braces must pair up around a field name, e.g. {date}")


def safe_part(text: str) -> str:
    """``text`` as part of a file name: runs of anything but word characters, '.' and '-'
    become one '_', and a leading dot goes (no hidden files)."""
    return _UNSAFE.sub("_", text).lstrip(".")


def split_name(name: str) -> tuple[str, str]:
    """(stem, extension with its dot) of a picture's own name, both made safe."""
    stem, dot, ext = safe_part(name).rpartition(".")
    if not dot or not stem:
        return safe_part(name) or "picture", ""
    return stem, "." + ext


def _capture(record: ImageRecord) -> tuple[str, str]:
    text = record.metadata.get("capture_time_text")
    found = _EXIF_TIME.match(text) if isinstance(text, str) else None
    if found:
        y, mo, d, h, mi, s = found.groups()
        return y + mo + d, h + mi + s
    when = record.capture_time or record.original_at or record.thumbnail_at
    if when is None:
        return "nodate", "notime"
    moment = datetime.datetime.fromtimestamp(when, datetime.UTC)
    return moment.strftime("%Y%m%d"), moment.strftime("%H%M%S")


def fields(record: ImageRecord, seq: int, device_name: str = "") -> dict[str, str]:
    """The template fields' values for ``record``, the ``seq``-th picture of this export."""
    date, time = _capture(record)
    meta = record.metadata
    camera = meta.get("model") or meta.get("make") or device_name or record.origin[:12]
    return {
        "date": date,
        "time": time,
        "camera": str(camera),
        "photographer": str(meta.get("photographer") or "unknown"),
        "seq": f"{seq:04d}",
        "name": split_name(record.name)[0],
        "id": record.image_id[:12],
    }


def export_stem(template: str | None, record: ImageRecord, seq: int, device_name: str = "") -> str:
    """The name an exported original gets, without extension (its own stem when no template)."""
    if template is None:
        return split_name(record.name)[0]
    values = fields(record, seq, device_name)
    stem = _FIELD.sub(lambda m: safe_part(values[m.group(1)]), template)
    return safe_part(stem)[:MAX_NAME] or record.image_id[:12]


def free_stem(folder: Path, stem: str, suffixes: Iterable[str]) -> str:
    """``stem``, or ``stem-2``, ``stem-3``... the first for which no ``stem + suffix`` exists."""
    wanted = list(suffixes)
    n = 1
    while True:
        candidate = stem if n == 1 else f"{stem}-{n}"
        if not any((folder / (candidate + s)).exists() for s in wanted):
            return candidate
        n += 1


def write_new(target: Path, data: bytes | Iterable[bytes]) -> None:
    """Write ``target`` durably, never replacing a file already there (FileExistsError).

    The bytes go to a temporary name, are fsynced, then hard-linked to ``target``: a link
    fails when the name exists, so a file written meanwhile by anyone else is kept.
    """
    temporary = target.with_name(f".{target.name}.cammesh-part")
    with open(temporary, "wb") as out:
        for chunk in [data] if isinstance(data, bytes) else data:
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    link_new(temporary, target)


def link_new(temporary: Path, target: Path) -> None:
    """Give the complete file ``temporary`` the name ``target`` unless that name exists
    (then FileExistsError, and ``temporary`` is removed either way)."""
    try:
        os.link(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
