"""Smaller copies (FIG. 10, S64-S65): a recompressed JPEG of an original, for a peer that asked.

A copy worth keeping (issue 17) carries the original's EXIF — capture time, camera, lens,
exposure, GPS — with the orientation reset to 1, because the pixels are already turned
upright, and the pixel dimensions set to the copy's own; and its colour profile.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from storage.errors import StoreError

if TYPE_CHECKING:
    from PIL import Image

ORIENTATION = 0x0112
EXIF_IFD = 0x8769
PIXEL_X, PIXEL_Y = 0xA002, 0xA003  # ExifImageWidth / ExifImageHeight, in the Exif IFD
DEFAULT_QUALITY = 85


def smaller_jpeg(path: Path, name: str, max_side: int | None, quality: int | None, *,
                 xmp: bytes | None = None) -> bytes:
    """A JPEG of the picture, at most ``max_side`` on its long side (FIG. 10, S64-S65), with
    the original's EXIF (see the module), carrying the XMP packet ``xmp`` when given (a
    delivered copy's caption, issue 19)."""
    from PIL import Image, ImageOps  # Pillow loads only when a smaller copy is asked for

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                exif = _kept_exif(image)
                if max_side:
                    image.draft("RGB", (max_side, max_side))
                picture = ImageOps.exif_transpose(image) or image
                if max_side:
                    picture.thumbnail((max_side, max_side))
                out = io.BytesIO()
                extra: dict[str, object] = {} if xmp is None else {"xmp": xmp}
                if exif is not None:
                    extra["exif"] = _for_pixels(exif, picture.size)
                icc = image.info.get("icc_profile")
                if icc:
                    extra["icc_profile"] = icc
                picture.convert("RGB").save(out, "JPEG", quality=quality or DEFAULT_QUALITY,
                                            **extra)
                return out.getvalue()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise StoreError(f"cannot make a smaller copy of {name!r}: {exc}") from exc


def _kept_exif(image: Image.Image) -> Image.Exif | None:
    """The original's EXIF with its sub-IFDs loaded, or None when it has none or it is broken
    (a copy without EXIF is still a copy: a camera's odd maker note never stops one)."""
    try:
        exif = image.getexif()
        if not exif:
            return None
        for ifd in (EXIF_IFD, 0x8825):  # the Exif IFD and GPS: read now, written back on save
            exif.get_ifd(ifd)
        return exif
    except Exception:
        return None


def _for_pixels(exif: Image.Exif, size: tuple[int, int]) -> bytes:
    """The EXIF block for a copy of ``size`` whose pixels are already upright."""
    exif[ORIENTATION] = 1
    sub = exif.get_ifd(EXIF_IFD)
    if PIXEL_X in sub or PIXEL_Y in sub:
        sub[PIXEL_X], sub[PIXEL_Y] = size
    try:
        return exif.tobytes()
    except Exception:
        return b""
