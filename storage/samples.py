"""Test pictures the project makes itself: JPEGs with full EXIF and an embedded thumbnail,
a fake TIFF-structured RAW with a JPEG preview, and a set of hostile files. No internet.

``write_sample_jpegs(folder, n, size="24mp")`` writes 6000x4000 JPEGs of 10-13 MB that
compress like photographs; ``size="small"`` writes 640x480 ones (tens of KB) for fast tests.
What each sample's EXIF says is given by ``sample_exif(index, seed=..., start_time=...)``.
"""

from __future__ import annotations

import io
import random
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw

SIZES = {"small": (640, 480), "24mp": (6000, 4000)}
THUMBNAIL_SIZE = (160, 120)
DEFAULT_START = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
METERING_CODES = (2, 3, 5)  # centre-weighted, spot, pattern

# TIFF field types used here
BYTE, ASCII, SHORT, LONG, RATIONAL, UNDEFINED = 1, 2, 3, 4, 5, 7


@dataclass(frozen=True, slots=True)
class SampleExif:
    """What a sample picture's EXIF records; tests compare extracted metadata with it."""

    make: str
    model: str
    lens: str
    capture_time: float  # epoch seconds; written as local time with OffsetTimeOriginal
    utc_offset_minutes: int
    exposure: tuple[int, int]  # seconds as a fraction
    f_number: tuple[int, int]
    iso: int
    metering_code: int
    focal_length: tuple[int, int]
    orientation: int
    gps: tuple[float, float, float]  # latitude, longitude, altitude (m)


def sample_exif(
    index: int, *, seed: int = 0, start_time: float = DEFAULT_START, orientation: int = 1
) -> SampleExif:
    """The EXIF the ``index``-th sample of a seeded series carries (deterministic)."""
    rng = random.Random(f"{seed}:{index}")
    return SampleExif(
        make="Cammesh Optics",
        model=f"CM-{1 + seed % 9}",
        lens="24-70mm F2.8",
        capture_time=float(int(start_time) + 2 * index),
        utc_offset_minutes=rng.choice((0, 60, -300, 330)),
        exposure=(1, rng.choice((60, 125, 250, 1000))),
        f_number=(rng.choice((28, 40, 56, 80)), 10),
        iso=rng.choice((100, 200, 400, 3200)),
        metering_code=rng.choice(METERING_CODES),
        focal_length=(rng.randrange(24, 71), 1),
        orientation=orientation,
        gps=(
            round(rng.uniform(-60, 60), 6),
            round(rng.uniform(-170, 170), 6),
            round(rng.uniform(0, 2000), 1),
        ),
    )


# --- a tiny TIFF writer: children are written before parents, so no patching ------------

Field = tuple[int, int, bytes | tuple[int, ...] | tuple[tuple[int, int], ...]]


class _Tiff:
    """Little-endian TIFF builder; offsets are relative to the TIFF header."""

    def __init__(self) -> None:
        self.buf = bytearray(b"II*\x00\x00\x00\x00\x00")

    def blob(self, data: bytes) -> int:
        if len(self.buf) % 2:
            self.buf.append(0)
        offset = len(self.buf)
        self.buf += data
        return offset

    def ifd(self, fields: list[Field], *, next_ifd: int = 0) -> int:
        fields = sorted(fields, key=lambda f: f[0])  # TIFF wants tags in ascending order
        payloads = [_encode(kind, values) for _, kind, values in fields]
        if len(self.buf) % 2:
            self.buf.append(0)
        start = len(self.buf)
        extra = start + 2 + 12 * len(fields) + 4
        table = bytearray(struct.pack("<H", len(fields)))
        tail = bytearray()
        for (tag, kind, values), data in zip(fields, payloads, strict=True):
            count = len(values) if kind not in (ASCII, UNDEFINED) else len(data)
            if len(data) <= 4:
                table += struct.pack("<HHI", tag, kind, count) + data.ljust(4, b"\0")
            else:
                table += struct.pack("<HHII", tag, kind, count, extra + len(tail))
                tail += data + (b"\0" if len(data) % 2 else b"")
        table += struct.pack("<I", next_ifd)
        self.buf += table + tail
        return start

    def finish(self, first_ifd: int) -> bytes:
        struct.pack_into("<I", self.buf, 4, first_ifd)
        return bytes(self.buf)


def _encode(kind: int, values: bytes | tuple[int, ...] | tuple[tuple[int, int], ...]) -> bytes:
    if isinstance(values, bytes):
        return values + b"\0" if kind == ASCII else values
    if kind == RATIONAL:
        return b"".join(struct.pack("<II", n, d) for n, d in values)  # type: ignore[misc]
    fmt = {BYTE: "B", SHORT: "H", LONG: "I"}[kind]
    return struct.pack(f"<{len(values)}{fmt}", *values)


def _rational(value: float, denominator: int = 10000) -> tuple[int, int]:
    return (round(abs(value) * denominator), denominator)


def _dms(value: float) -> tuple[tuple[int, int], ...]:
    degrees = int(abs(value))
    minutes = int((abs(value) - degrees) * 60)
    seconds = (abs(value) - degrees - minutes / 60) * 3600
    return ((degrees, 1), (minutes, 1), _rational(seconds, 1000))


def _local_text(info: SampleExif) -> tuple[bytes, bytes]:
    offset = info.utc_offset_minutes
    local = time.gmtime(info.capture_time + offset * 60)
    sign = "+" if offset >= 0 else "-"
    text = time.strftime("%Y:%m:%d %H:%M:%S", local).encode()
    return text, f"{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}".encode()


def exif_bytes(info: SampleExif, *, width: int, height: int, thumbnail: bytes | None) -> bytes:
    """An APP1 EXIF payload ("Exif\\0\\0" + TIFF) with IFD0, Exif, GPS and an IFD1 thumbnail."""
    tiff = _Tiff()
    taken, offset = _local_text(info)
    exif_ifd = tiff.ifd(
        [
            (0x829A, RATIONAL, (info.exposure,)),
            (0x829D, RATIONAL, (info.f_number,)),
            (0x8827, SHORT, (info.iso,)),
            (0x9000, UNDEFINED, b"0232"),
            (0x9003, ASCII, taken),
            (0x9011, ASCII, offset),
            (0x9207, SHORT, (info.metering_code,)),
            (0x920A, RATIONAL, (info.focal_length,)),
            (0xA002, LONG, (width,)),
            (0xA003, LONG, (height,)),
            (0xA434, ASCII, info.lens.encode()),
        ]
    )
    lat, lon, alt = info.gps
    gps_ifd = tiff.ifd(
        [
            (0x0000, BYTE, (2, 3, 0, 0)),
            (0x0001, ASCII, b"N" if lat >= 0 else b"S"),
            (0x0002, RATIONAL, _dms(lat)),
            (0x0003, ASCII, b"E" if lon >= 0 else b"W"),
            (0x0004, RATIONAL, _dms(lon)),
            (0x0005, BYTE, (0 if alt >= 0 else 1,)),
            (0x0006, RATIONAL, (_rational(alt, 10),)),
        ]
    )
    ifd1 = 0
    if thumbnail is not None:
        at = tiff.blob(thumbnail)
        ifd1 = tiff.ifd(
            [
                (0x0103, SHORT, (6,)),
                (0x0201, LONG, (at,)),
                (0x0202, LONG, (len(thumbnail),)),
            ]
        )
    ifd0 = tiff.ifd(
        [
            (0x010F, ASCII, info.make.encode()),
            (0x0110, ASCII, info.model.encode()),
            (0x0112, SHORT, (info.orientation,)),
            (0x8769, LONG, (exif_ifd,)),
            (0x8825, LONG, (gps_ifd,)),
        ],
        next_ifd=ifd1,
    )
    return b"Exif\0\0" + tiff.finish(ifd0)


# --- picture content -----------------------------------------------------------------


def _noise(size: tuple[int, int], spread: int, rng: random.Random) -> Image.Image:
    """Seeded uniform noise around mid-grey (Pillow's effect_noise cannot be seeded)."""
    raw = Image.frombytes("L", size, rng.randbytes(size[0] * size[1]))
    return raw.point(lambda v: 128 - spread + v * 2 * spread // 255)


def _base_image(size: tuple[int, int], seed: int) -> Image.Image:
    """Photographic-looking content: gradients, coarse and fine noise (the costly part, once)."""
    rng = random.Random(f"base:{seed}")
    width, height = size
    fine = _noise(size, 34, rng)
    coarse = _noise((max(1, width // 2), max(1, height // 2)), 68, rng).resize(size)
    gradient = Image.linear_gradient("L").resize(size)
    radial = Image.radial_gradient("L").resize(size)
    red = ImageChops.add(ImageChops.multiply(gradient, coarse), fine, scale=1.3, offset=-40)
    green = ImageChops.blend(radial, coarse, 0.5)
    blue = ImageChops.blend(gradient.transpose(Image.Transpose.ROTATE_180), fine, 0.3)
    return Image.merge("RGB", (red, green, blue))


def _picture(base: Image.Image, rng: random.Random) -> Image.Image:
    """A cheap variation on the base: seeded shapes, so every picture hashes differently."""
    picture = base.copy()
    draw = ImageDraw.Draw(picture)
    width, height = picture.size
    for _ in range(24):
        x, y = rng.randrange(width), rng.randrange(height)
        side = rng.randrange(max(2, width // 60), max(3, width // 5))
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        box = (x, y, x + side, y + side * 2 // 3)
        if rng.random() < 0.5:
            draw.ellipse(box, fill=colour)
        else:
            draw.rectangle(box, outline=colour, width=max(1, side // 20))
    return picture


def _jpeg(image: Image.Image, *, quality: int, exif: bytes = b"") -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, exif=exif)
    return out.getvalue()


def encode_sample(picture: Image.Image, info: SampleExif, *, quality: int) -> bytes:
    """The JPEG bytes of ``picture`` with ``info`` as EXIF and a 160x120 embedded thumbnail."""
    small = picture.copy()
    small.draft("RGB", THUMBNAIL_SIZE)
    small = small.resize(THUMBNAIL_SIZE)
    thumbnail = _jpeg(small, quality=80)
    exif = exif_bytes(info, width=picture.width, height=picture.height, thumbnail=thumbnail)
    return _jpeg(picture, quality=quality, exif=exif)


def write_sample_jpegs(
    folder: Path,
    count: int,
    *,
    size: str = "small",
    seed: int = 0,
    start_time: float = DEFAULT_START,
) -> list[Path]:
    """Write ``count`` distinct JPEGs named ``IMG_<seed>_<n>.JPG``; EXIF as ``sample_exif`` says."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, not {size!r}")
    folder.mkdir(parents=True, exist_ok=True)
    base = _base_image(SIZES[size], seed)
    quality = 93 if size == "24mp" else 90  # 93: 11-12 MB, like a camera's fine JPEG
    paths = []
    for index in range(count):
        info = sample_exif(index, seed=seed, start_time=start_time)
        picture = _picture(base, random.Random(f"picture:{seed}:{index}"))
        path = folder / f"IMG_{seed}_{index:04d}.JPG"
        _write(path, encode_sample(picture, info, quality=quality))
        paths.append(path)
    return paths


def write_sample_raw(path: Path, *, seed: int = 0, preview_in_ifd: bool = True) -> Path:
    """A TIFF-structured fake RAW: a small blue thumbnail in IFD0, a larger red preview
    (1024x683) in a SubIFD, and fake sensor data. With ``preview_in_ifd=False`` no IFD
    points at the preview: it is only findable by scanning for a JPEG run."""
    rng = random.Random(f"raw:{seed}")
    thumbnail = _jpeg(Image.new("RGB", THUMBNAIL_SIZE, (0, 0, 200)), quality=80)
    preview = _jpeg(Image.new("RGB", (1024, 683), (200, 0, 0)), quality=85)
    sensor = rng.randbytes(64 * 1024)
    tiff = _Tiff()
    tiff.blob(b"\0" * 16)
    sensor_at = tiff.blob(sensor)
    preview_at = tiff.blob(preview)
    raw_ifd = tiff.ifd(
        [
            (0x00FE, LONG, (0,)),
            (0x0100, LONG, (128,)),
            (0x0101, LONG, (128,)),
            (0x0103, SHORT, (1,)),
            (0x0111, LONG, (sensor_at,)),
            (0x0117, LONG, (len(sensor),)),
        ]
    )
    preview_fields: list[Field] = [(0x00FE, LONG, (1,))]
    if preview_in_ifd:
        preview_fields += [(0x0201, LONG, (preview_at,)), (0x0202, LONG, (len(preview),))]
    preview_ifd = tiff.ifd(preview_fields)
    thumbnail_at = tiff.blob(thumbnail)
    ifd0 = tiff.ifd(
        [
            (0x00FE, LONG, (1,)),
            (0x010F, ASCII, b"SONY"),
            (0x0110, ASCII, b"ILCE-7M3"),
            (0x0112, SHORT, (1,)),
            (0x014A, LONG, (preview_ifd, raw_ifd)),
            (0x0201, LONG, (thumbnail_at,)),
            (0x0202, LONG, (len(thumbnail),)),
        ]
    )
    _write(path, tiff.finish(ifd0))
    return path


def write_hostile_files(folder: Path) -> dict[str, Path]:
    """Files an import must survive; keys name what is wrong with each."""
    folder.mkdir(parents=True, exist_ok=True)
    good = write_sample_jpegs(folder / "good", 1, seed=99)[0].read_bytes()
    files: dict[str, bytes] = {
        "zero-byte.jpg": b"",
        "truncated.jpg": good[:2000],  # ends inside its EXIF block
        "truncated-scan.jpg": _jpeg(Image.new("RGB", (640, 480), (9, 9, 9)), quality=85)[:3000],
        "text.jpg": b"Dear diary, this is not a picture.\n" * 20,
        "bomb.png": _bomb_png(100_000),
        "bomb-warning.png": _bomb_png(10_000),  # past Pillow's warning limit only
        "bomb.jpg": _bomb_jpeg_header(),
        "garbage-exif.jpg": _with_garbage_exif(),
        "movie.MOV": b"\0\0\0\x14ftypqt  \0\0\0\0qt  " + bytes(2000),
    }
    paths = {name: folder / name for name in files}
    for name, data in files.items():
        _write(paths[name], data)
    no_exif = Image.new("RGB", (640, 480), (30, 120, 30))
    paths["no-exif.jpg"] = folder / "no-exif.jpg"
    _write(paths["no-exif.jpg"], _jpeg(no_exif, quality=85))
    paths["rotated.jpg"] = folder / "rotated.jpg"
    _write(paths["rotated.jpg"], rotated_sample(orientation=6))
    try:
        odd = folder / "ctrl\x01\x1b[31mname\n.jpg"
        _write(odd, good)
        paths["control-name.jpg"] = odd
    except OSError:  # a filesystem that refuses such names: nothing to test there
        pass
    return paths


def rotated_sample(*, orientation: int, with_thumbnail: bool = True) -> bytes:
    """A 640x480 JPEG, left half red and right half blue as stored, with the given
    EXIF orientation; thumbnails must show it turned as a viewer would."""
    image = Image.new("RGB", (640, 480), (220, 0, 0))
    image.paste((0, 0, 220), (320, 0, 640, 480))
    info = sample_exif(0, orientation=orientation)
    if not with_thumbnail:
        exif = exif_bytes(info, width=640, height=480, thumbnail=None)
        return _jpeg(image, quality=90, exif=exif)
    return encode_sample(image, info, quality=90)


def _bomb_png(side: int) -> bytes:
    """A tiny PNG claiming side x side pixels: opening it must not allocate them."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + chunk(b"IEND", b"")
    )


def _bomb_jpeg_header() -> bytes:
    """A JPEG whose frame header claims 65000x65000 pixels and whose data is tiny."""
    small = _jpeg(Image.new("L", (8, 8)), quality=50)
    at = small.index(b"\xff\xc0")
    frame = bytearray(small[at:])
    struct.pack_into(">HH", frame, 5, 65000, 65000)
    return small[:at] + bytes(frame)


def _with_garbage_exif() -> bytes:
    """A sound JPEG whose EXIF block is random bytes after a valid-looking TIFF header."""
    plain = _jpeg(Image.new("RGB", (640, 480), (90, 90, 200)), quality=85)
    junk = b"Exif\0\0MM\0*\0\0\0\x08" + random.Random(7).randbytes(400)
    return plain[:2] + b"\xff\xe1" + struct.pack(">H", len(junk) + 2) + junk + plain[2:]


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
