"""Small pictures made from JPEG bytes, and what extracting a file gives.

The pieces every kind of file shares (``storage.thumbnails`` for JPEG, HEIF and movies,
``storage.raw_previews`` for RAW): walking a JPEG's marker segments to its frame header, a
reduced decode (Pillow ``draft``) to at most ``MAX_SIDE`` pixels, EXIF orientation applied to
the small picture, and the grey placeholder with its reason.
"""

from __future__ import annotations

import functools
import io
import warnings
from dataclasses import dataclass, field
from typing import BinaryIO, Final

from PIL import Image

from storage.errors import MovieUnusable, StoreError
from storage.metadata import Exif, MetadataValue, merged
from storage.movie_strip import StripFrame

MAX_SIDE: Final = 320
HEAD_BYTES: Final = 128 * 1024  # EXIF lives in one APP1 segment of at most 64 KiB, near the start
MAX_HEAD_BYTES: Final = 1024 * 1024  # give up looking for the frame header after this much
QUALITY: Final = 85


# EXIF orientation -> the transpose that shows the picture upright (EXIF 2.32, tag 0x0112).
UPRIGHT: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Frame headers Pillow decodes: baseline, extended and progressive Huffman.
DECODABLE_SOF: Final = {0xC0, 0xC1, 0xC2}
ALL_SOF: Final = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}



@dataclass(frozen=True, slots=True)
class Extracted:
    """What import stores about a file besides its bytes.

    ``thumbnail_source`` is "embedded", "decoded", "raw-preview", "keyframe" (a movie's
    poster, the first frame of its ``strip``) or "placeholder"; ``reason`` says why the
    embedded thumbnail was not used, why there is only a placeholder, or why a movie's strip
    was cut short.  ``width``/``height`` are the pixels as stored, before orientation."""

    thumbnail: bytes
    thumbnail_source: str
    reason: str | None
    mime: str
    capture_time: float | None
    metadata: dict[str, MetadataValue] = field(default_factory=dict)
    width: int | None = None
    height: int | None = None
    strip: tuple[StripFrame, ...] = ()


class Unusable(StoreError):
    """This file's content cannot give a thumbnail; the message is the logged reason (caught
    inside ``extract``, never raised out of it)."""


def reason_of(exc: Exception) -> str:
    """The logged reason a thumbnail could not be made (at most protocol Limits.MAX_TEXT)."""
    if isinstance(exc, Unusable | MovieUnusable):
        text = str(exc)
    elif isinstance(exc, Image.DecompressionBombError | Image.DecompressionBombWarning):
        text = f"decompression bomb: {exc}"  # the warning is raised when warnings are errors
    else:
        text = f"unreadable picture: {type(exc).__name__}: {exc}"
    return text[:1024]


def placeholder(
    mime: str, reason: str, exif: Exif | None = None, size: tuple[int, int] | None = None
) -> Extracted:
    """The grey placeholder result, keeping whatever metadata could be read."""
    exif = exif or Exif()
    width, height = size or (None, None)
    metadata = merged(exif.metadata, width=width, height=height)
    return Extracted(
        _placeholder_jpeg(), "placeholder", reason, mime, exif.capture_time, metadata, width, height
    )


@functools.cache
def _placeholder_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (160, 120), (128, 128, 128)).save(out, "JPEG", quality=QUALITY)
    return out.getvalue()


# --- JPEG frames ---------------------------------------------------------------------------



@dataclass(frozen=True, slots=True)
class Frame:
    """What the marker segments before the scan say: where EXIF is, and the frame size."""

    exif: bytes | None
    sof: int | None
    width: int
    height: int


def jpeg_frame(data: bytes) -> Frame | None:
    """Walk JPEG marker segments up to the scan; None when ``data`` ends before the frame."""
    at, exif = 2, None
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            raise Unusable("damaged JPEG: marker expected")
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:
            at += 2
            continue
        if marker in (0xD9, 0xDA):
            raise Unusable("damaged JPEG: no frame header before the scan")
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        end = at + 2 + length
        if length < 2:
            raise Unusable("damaged JPEG: bad segment length")
        if end > len(data):
            return None
        if marker == 0xE1 and exif is None and data[at + 4 : at + 10] == b"Exif\0\0":
            exif = data[at + 4 : end]
        if marker in ALL_SOF:
            if length < 8:
                raise Unusable("damaged JPEG: short frame header")
            height = int.from_bytes(data[at + 5 : at + 7], "big")
            width = int.from_bytes(data[at + 7 : at + 9], "big")
            return Frame(exif, marker, width, height)
        at = end
    return None


def read_frame(file: BinaryIO, head: bytes) -> Frame:
    frame = jpeg_frame(head)
    while frame is None and len(head) < MAX_HEAD_BYTES:
        more = file.read(len(head))
        if not more:
            raise Unusable("truncated JPEG: it ends before its frame header")
        head += more
        frame = jpeg_frame(head)
    if frame is None:
        raise Unusable("damaged JPEG: no frame header in the first megabyte")
    return frame


def upright_thumbnail(jpeg: bytes, orientation: int) -> bytes:
    """The embedded thumbnail as is when upright and small, else turned/reduced and re-encoded."""
    with Image.open(io.BytesIO(jpeg), formats=["JPEG"]) as image:
        if orientation == 1 and max(image.size) <= MAX_SIDE:
            return jpeg
        image.draft("RGB", (MAX_SIDE, MAX_SIDE))
        image.thumbnail((MAX_SIDE, MAX_SIDE))
        return encode(image, orientation)


def decode(file: BinaryIO, orientation: int) -> tuple[bytes, int, int]:
    """A reduced decode: the JPEG decoder scales by 1/2..1/8 (``draft``), then a resample."""
    with warnings.catch_warnings():
        # Pillow re-reads EXIF on open and warns about damage we already handled ourselves;
        # its bomb warning is replaced by our own size check just below (same limit).
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = Image.open(file)
    with image:
        width, height = image.size
        if width * height > max_pixels():
            raise Unusable(f"decompression bomb: {width}x{height} pixels is past the limit")
        image.draft("RGB", (MAX_SIDE, MAX_SIDE))
        image.thumbnail((MAX_SIDE, MAX_SIDE))
        return encode(image, orientation), width, height


def encode(image: Image.Image, orientation: int) -> bytes:
    if image.mode != "RGB":
        image = image.convert("RGB")
    if orientation in UPRIGHT:
        image = image.transpose(UPRIGHT[orientation])
    out = io.BytesIO()
    image.save(out, "JPEG", quality=QUALITY)
    return out.getvalue()


def max_pixels() -> int:
    # Pillow's own bomb limit (it warns above it): a caller that raised it wants bigger pictures.
    limit = Image.MAX_IMAGE_PIXELS
    return int(limit) if limit else 1 << 40


def preview_thumbnail(jpeg: bytes, exif: Exif) -> bytes:
    frame = jpeg_frame(jpeg)
    if frame is None or frame.sof not in DECODABLE_SOF:
        raise Unusable("not a decodable JPEG (lossless raw data?)")
    if frame.width * frame.height > max_pixels():
        raise Unusable(f"preview claims {frame.width}x{frame.height} pixels")
    thumbnail, _, _ = decode(io.BytesIO(jpeg), exif.orientation)
    return thumbnail
