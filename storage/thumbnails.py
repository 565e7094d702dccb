"""Thumbnails and metadata of one file, made without ever letting its content stop an import.

``extract(path)`` tries, in order (DESIGN.md, "Storage"): the JPEG thumbnail embedded in EXIF
(found by reading the first bytes only, no decode of the picture); a reduced decode (Pillow
``draft``) to at most 320 px on the long side; for TIFF-based RAW files the largest embedded
JPEG preview (``storage.raw_previews``); HEIF and movies through the media extra; and
otherwise a grey placeholder with a reason (``storage.previews``). EXIF orientation is applied
to the small thumbnail, never to the big picture.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import BinaryIO, Final

from storage.errors import MovieUnusable
from storage.metadata import Exif, Tiff, merged, read_exif
from storage.movie_process import HARD_TIMEOUT_S, extract_movie_isolated
from storage.movies import EMPTY_MOVIE, MEDIA_HINT, MOVIE_SUFFIXES, StripSettings
from storage.previews import (
    DECODABLE_SOF,
    HEAD_BYTES,
    MAX_SIDE,
    QUALITY,
    Extracted,
    Unusable,
    decode,
    encode,
    max_pixels,
    placeholder,
    read_frame,
    reason_of,
    upright_thumbnail,
)
from storage.raw_previews import from_rawpy, from_tiff, with_raw_size

__all__ = ["MAX_SIDE", "QUALITY", "Extracted", "extract", "mime_of", "placeholder"]

MAX_EMBEDDED: Final = 256 * 1024  # protocol Limits.MAX_THUMBNAIL
# How an import makes a movie's strip: the walk's own bounds, then the child's hard timeout
# (a movie's bounded time in an import is MOVIE_TIMEOUT_S, whatever the file does).
MOVIE_SETTINGS = StripSettings()
MOVIE_TIMEOUT_S = HARD_TIMEOUT_S


def extract(path: Path, *, use_embedded: bool = True) -> Extracted:
    """Thumbnail, mime type, capture time and metadata of the file at ``path``.

    Raises only when the path itself cannot be opened (OSError); any content gives a result.
    ``use_embedded=False`` skips the EXIF thumbnail of a JPEG (to remake it, or to measure)."""
    with path.open("rb") as file:
        head = file.read(HEAD_BYTES)
        mime = mime_of(head)
        if not head and path.suffix.lower() in MOVIE_SUFFIXES:  # its name is all it has
            return placeholder(MOVIE_SUFFIXES[path.suffix.lower()], EMPTY_MOVIE)
        try:
            return _extract(path, file, head, mime, use_embedded)
        except Exception as exc:  # a hostile file must never stop an import (DESIGN.md)
            return placeholder(mime, reason_of(exc))


def mime_of(head: bytes) -> str:
    """The media type from the first bytes of a file (magic numbers), never from its name."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff_mime(head)
    if head.startswith(b"FUJIFILMCCD-RAW"):
        return "image/x-fuji-raf"
    if _is_transport_stream(head):
        return "video/mp2t"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand == b"qt  ":
            return "video/quicktime"
        if brand in (b"heic", b"heix", b"hevc", b"mif1", b"msf1"):
            return "image/heic"
        return "image/x-canon-cr3" if brand == b"crx " else "video/mp4"
    if head and _looks_like_text(head[:4096]):
        return "text/plain"
    return "application/octet-stream"


def _is_transport_stream(head: bytes) -> bool:
    """MPEG-TS (.MTS is 192-byte packets with a 4-byte timestamp first, M2TS): a sync byte
    0x47 at the start of each of the first packets."""
    for size, first in ((188, 0), (192, 4)):
        starts = range(first, min(len(head), 5 * size), size)
        if len(starts) >= 2 and all(head[at] == 0x47 for at in starts):
            return True
    return False


def _looks_like_text(sample: bytes) -> bool:
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\t\r\n\f" for c in text)


def _tiff_mime(head: bytes) -> str:
    if head[8:10] == b"CR":
        return "image/x-canon-cr2"
    try:
        tiff = Tiff(head)
    except ValueError:
        return "image/tiff"
    ifd0 = tiff.ifd(tiff.first_ifd)
    if 0xC612 in ifd0:  # DNGVersion
        return "image/x-adobe-dng"
    make = (tiff.text(ifd0.get(0x010F)) or "").upper()
    if make.startswith("NIKON"):
        return "image/x-nikon-nef"
    if make.startswith("SONY"):
        return "image/x-sony-arw"
    return "image/tiff"


def _extract(
    path: Path, file: BinaryIO, head: bytes, mime: str, use_embedded: bool
) -> Extracted:
    if not head:
        raise Unusable("empty file")
    if mime == "image/jpeg":
        return _from_jpeg(file, head, mime, use_embedded)
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        found = from_tiff(file, mime)
        if mime == "image/tiff":
            return found
        if found.thumbnail_source != "placeholder":
            return with_raw_size(file, found)
        return from_rawpy(file, mime, found)  # LibRaw knows makers' layouts we do not
    if mime in ("image/x-canon-cr3", "image/x-fuji-raf"):
        return from_rawpy(file, mime, None)
    if mime == "image/heic":
        return _from_heif(file, mime, use_embedded)
    if mime.startswith("video/"):
        return _from_movie(path, mime)
    if mime in ("image/png", "image/gif", "image/webp"):
        file.seek(0)
        thumbnail, width, height = decode(file, 1)
        metadata = merged({}, width=width, height=height)
        return Extracted(thumbnail, "decoded", None, mime, None, metadata, width, height)
    raise Unusable(f"not a picture this device can read ({mime})")


def _from_jpeg(file: BinaryIO, head: bytes, mime: str, use_embedded: bool) -> Extracted:
    frame = read_frame(file, head)
    exif, embedded = Exif(), None
    if frame.exif is not None:
        try:
            tiff = Tiff(frame.exif, 6)
        except ValueError:
            tiff = None
        if tiff is not None:
            exif = read_exif(tiff)
            embedded = _ifd1_thumbnail(tiff) if use_embedded else None
    metadata = merged(exif.metadata, width=frame.width, height=frame.height)
    result = functools.partial(
        Extracted,
        mime=mime,
        capture_time=exif.capture_time,
        metadata=metadata,
        width=frame.width,
        height=frame.height,
    )
    if embedded is not None:
        try:
            thumbnail = upright_thumbnail(embedded, exif.orientation)
        except Exception as exc:  # a broken embedded thumbnail: decode the picture instead
            reason = f"embedded thumbnail unreadable ({type(exc).__name__})"
        else:
            return result(thumbnail=thumbnail, thumbnail_source="embedded", reason=None)
    else:
        reason = "no embedded EXIF thumbnail" if use_embedded else "embedded thumbnail not wanted"
    try:
        if frame.sof not in DECODABLE_SOF:
            raise Unusable(f"JPEG coding 0x{frame.sof:02X} cannot be decoded here")
        if frame.width * frame.height > max_pixels() or not frame.width or not frame.height:
            raise Unusable(
                f"decompression bomb: the frame claims {frame.width}x{frame.height} pixels"
            )
        file.seek(0)
        thumbnail, _, _ = decode(file, exif.orientation)
    except Exception as exc:  # keep the metadata EXIF gave even when the picture is broken
        return placeholder(mime, reason_of(exc), exif, (frame.width, frame.height))
    return result(thumbnail=thumbnail, thumbnail_source="decoded", reason=reason)


def _ifd1_thumbnail(tiff: Tiff) -> bytes | None:
    """The JPEG IFD1 points at (JPEGInterchangeFormat/Length), if it looks like a whole JPEG."""
    ifd1 = tiff.ifd(tiff.next_ifd(tiff.first_ifd))
    offset, length = tiff.integer(ifd1.get(0x0201)), tiff.integer(ifd1.get(0x0202))
    if offset is None or length is None or not 0 < length <= MAX_EMBEDDED:
        return None
    data = bytes(tiff.data[tiff.base + offset : tiff.base + offset + length])
    if len(data) != length or not data.startswith(b"\xff\xd8"):
        return None
    if not data.rstrip(b"\0").endswith(b"\xff\xd9"):
        return None
    return data


# --- movies, HEIF, RAW through the media extra (cammesh[media]) ---------------------


def _from_movie(path: Path, mime: str) -> Extracted:
    try:
        import av  # noqa: F401  # said here, at once, rather than by a child process
    except ImportError:
        raise MovieUnusable(f"{MEDIA_HINT} (PyAV is not installed)") from None
    # MovieUnusable becomes the placeholder's reason.
    movie = extract_movie_isolated(path, MOVIE_SETTINGS, hard_timeout_s=MOVIE_TIMEOUT_S)
    return Extracted(
        movie.poster, "keyframe", movie.reason, mime, movie.capture_time, movie.metadata,
        movie.width, movie.height, movie.strip,
    )


def _from_heif(file: BinaryIO, mime: str, use_embedded: bool) -> Extracted:
    """Its embedded thumbnail first, else a decode of the primary image, reduced here.

    libheif applies the picture's own rotation and mirroring (irot/imir) to both, so the
    EXIF orientation is metadata only; applying it again would turn the picture twice."""
    try:
        import pillow_heif
    except ImportError:
        raise Unusable(f"{MEDIA_HINT.replace('movie strips', 'HEIF thumbnails')} "
                        "(pillow-heif is not installed)") from None
    file.seek(0)
    heif = pillow_heif.open_heif(file, convert_hdr_to_8bit=True)
    primary = heif[heif.primary_index]
    width, height = primary.size
    if width * height > max_pixels():
        raise Unusable(f"decompression bomb: {width}x{height} pixels is past the limit")
    exif = Exif()
    raw_exif = primary.info.get("exif")
    if isinstance(raw_exif, bytes) and raw_exif:
        with contextlib.suppress(ValueError):
            exif = read_exif(Tiff(raw_exif, 6 if raw_exif[:6] == b"Exif\0\0" else 0))
    metadata = merged(exif.metadata, width=width, height=height)
    reason: str | None = "no embedded HEIF thumbnail"
    if use_embedded and primary.info.get("thumbnails"):
        try:
            image = primary.get_thumbnail(0).to_pillow()
            image.thumbnail((MAX_SIDE, MAX_SIDE))
            thumbnail = encode(image, 1)
        except Exception as exc:  # a broken thumbnail item: decode the picture instead
            reason = f"embedded thumbnail unreadable ({type(exc).__name__})"
        else:
            return Extracted(thumbnail, "embedded", None, mime, exif.capture_time, metadata,
                             width, height)
    elif not use_embedded:
        reason = "embedded thumbnail not wanted"
    image = primary.to_pillow()
    image.thumbnail((MAX_SIDE, MAX_SIDE))
    return Extracted(encode(image, 1), "decoded", reason, mime, exif.capture_time, metadata,
                     width, height)
