"""Smaller copies (FIG. 10, S64-S65): a recompressed JPEG of an original, for a peer that asked."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from storage.errors import StoreError


def smaller_jpeg(path: Path, name: str, max_side: int | None, quality: int | None, *,
                 xmp: bytes | None = None) -> bytes:
    """A JPEG of the picture, at most ``max_side`` on its long side (FIG. 10, S64-S65),
    carrying the XMP packet ``xmp`` when given (a delivered copy's caption, issue 19)."""
    from PIL import Image, ImageOps  # Pillow loads only when a smaller copy is asked for

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if max_side:
                    image.draft("RGB", (max_side, max_side))
                picture = ImageOps.exif_transpose(image) or image
                if max_side:
                    picture.thumbnail((max_side, max_side))
                out = io.BytesIO()
                extra = {} if xmp is None else {"xmp": xmp}
                picture.convert("RGB").save(out, "JPEG", quality=quality or 85, **extra)
                return out.getvalue()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise StoreError(f"cannot make a smaller copy of {name!r}: {exc}") from exc
