"""Movies, HEIF pictures and a DNG that tests and benchmarks make themselves (no downloads).

Needs the media extra (``cammesh[media]``: PyAV, pillow-heif).  Movies are solid colours that
change at given cut times, so encoding is quick even at 1080p or 4K and the only scene changes
are the cuts.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, Final

from PIL import Image

from storage import samples

COLOURS: Final = ((220, 30, 30), (30, 200, 40), (30, 40, 220), (230, 220, 40), (200, 40, 200))


def _yuv(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """BT.601 limited range, as libx264 and libx265 expect for yuv420p."""
    r, g, b = rgb
    y = 16 + (65.738 * r + 129.057 * g + 25.064 * b) / 256
    u = 128 + (-37.945 * r - 74.494 * g + 112.439 * b) / 256
    v = 128 + (112.439 * r - 94.154 * g - 18.285 * b) / 256
    return round(y), round(u), round(v)


def write_movie(
    path: Path,
    *,
    seconds: float,
    size: tuple[int, int] = (320, 180),
    fps: int = 25,
    codec: str = "libx264",
    cuts: Sequence[float] = (),
    gop_s: float = 2.0,
    creation_time: str | None = "2026-12-07T09:30:00.000000Z",
    textured: bool = False,
    preset: str = "ultrafast",
    crf: int = 35,
    noise: int = 0,
    bitrate_kbps: int | None = None,
    keyframe_at_cuts: bool = True,
) -> Path:
    """A movie of solid colours, the colour changing at each time in ``cuts`` (seconds).

    Keyframes come every ``gop_s`` seconds and at each cut (a camera's encoder puts one
    there), so a cut is a keyframe of its own.  ``textured`` pans a smooth random texture
    tinted by the scene's colour instead, so that every frame costs its decoder real work
    (benchmarks; needs numpy); ``noise`` adds fresh grain of that amplitude to each textured
    frame, as a sensor does, so that predicted frames carry residuals too.  ``bitrate_kbps``
    encodes at that constant rate (a camera's hardware encoder) instead of at ``crf``;
    without ``keyframe_at_cuts`` the GOP is fixed, as some cameras' is, and a cut waits for the
    next keyframe."""
    import av  # the media extra

    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    with av.open(str(path), "w") as container:
        if creation_time is not None:
            container.metadata["creation_time"] = creation_time
        stream: Any = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        gop = max(1, round(gop_s * fps))
        options = {"preset": preset, "crf": str(crf)}
        rate = ""
        if bitrate_kbps is not None:  # constant bitrate, as a camera's encoder writes
            options = {"preset": preset}
            rate = f":bitrate={bitrate_kbps}:vbv-maxrate={bitrate_kbps}" \
                   f":vbv-bufsize={bitrate_kbps}"
        scenecut = 40 if keyframe_at_cuts else 0
        if codec == "libx264":
            stream.options = {**options, "x264-params": f"keyint={gop}:min-keyint={gop}:"
                                                        f"scenecut={scenecut}{rate}"}
        elif codec == "libx265":
            # Without forced-idr, libx265 makes a forced keyframe a plain I-frame, no keyframe.
            stream.options = {**options, "forced-idr": "1",
                              "x265-params": f"keyint={gop}:min-keyint={gop}:"
                                                        f"scenecut={scenecut}:log-level=none:"
                                                        f"open-gop=0{rate}"}
        frames = []
        for rgb in COLOURS:
            frame = av.VideoFrame(width, height, "yuv420p")
            for plane, value in zip(frame.planes, _yuv(rgb), strict=True):
                plane.update(bytes([value]) * plane.buffer_size)
            frames.append(frame)
        bounds = sorted(cuts)
        panning = _Panning(width, height, noise) if textured else None
        for index in range(round(seconds * fps)):
            scene = sum(1 for cut in bounds if index >= round(cut * fps))
            if panning is not None:
                frame = panning.frame(index, COLOURS[scene % len(COLOURS)])
            else:
                frame = frames[scene % len(frames)]
            frame.pts = index
            # A cut forces a keyframe, as a camera's encoder would place one.
            frame.pict_type = av.video.frame.PictureType.I if keyframe_at_cuts and any(
                index == round(cut * fps) for cut in bounds) else av.video.frame.PictureType.NONE
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


class _Panning:
    """A random texture, wider than the picture, seen through a window moving 4 px a frame;
    its brightness tinted per scene."""

    def __init__(self, width: int, height: int, noise: int) -> None:
        import numpy as np

        self.width, self.height, self.noise = width, height, noise
        rng = self.rng = np.random.default_rng(18)
        # Detail a few pixels across, as in a photographed scene; no per-pixel noise (which
        # would make keyframes incompressible while the pan predicts it for free).
        coarse = rng.integers(0, 256, (height // 4 + 2, width // 4 + 320), dtype=np.uint8)
        image = Image.fromarray(coarse).resize(
            (coarse.shape[1] * 4, coarse.shape[0] * 4), Image.Resampling.BICUBIC)
        self.texture = np.asarray(image)

    def frame(self, index: int, rgb: tuple[int, int, int]) -> Any:
        import av
        import numpy as np

        shift = (index * 4) % (self.texture.shape[1] - self.width)
        luma = self.texture[: self.height, shift : shift + self.width]
        y, u, v = _yuv(rgb)
        plane_y = luma.astype(np.int16) * y // 255 + 16
        if self.noise:
            plane_y += self.rng.integers(-self.noise, self.noise + 1, plane_y.shape, np.int16)
        plane_y = np.clip(plane_y, 0, 255).astype(np.uint8)
        chroma = np.empty((self.height // 2, self.width), dtype=np.uint8)
        chroma[: self.height // 4] = u
        chroma[self.height // 4 :] = v
        return av.VideoFrame.from_ndarray(np.concatenate([plane_y, chroma]), format="yuv420p")


def write_sony_clip(folder: Path, *, seconds: float = 6.0, cuts: Sequence[float] = (3.0,)) -> Path:
    """A Sony card's layout: CLIP/C0001.MP4 and its proxy SUB/C0001S03.MP4 (smaller, same
    scenes).  Returns the main clip's path."""
    main = write_movie(folder / "CLIP" / "C0001.MP4", seconds=seconds, size=(640, 360),
                       cuts=cuts)
    write_movie(folder / "SUB" / "C0001S03.MP4", seconds=seconds, size=(160, 90), cuts=cuts)
    return main


def write_heif(path: Path, *, size: tuple[int, int] = (640, 480), thumbnail: bool,
               orientation: int = 1) -> Path:
    """A HEIF picture, left half red and right half blue, with or without an embedded
    thumbnail, with an EXIF block (camera, capture time, orientation)."""
    import pillow_heif  # the media extra

    image = Image.new("RGB", size, (220, 0, 0))
    image.paste((0, 0, 220), (size[0] // 2, 0, size[0], size[1]))
    exif = samples.exif_bytes(samples.sample_exif(0, orientation=orientation),
                              width=size[0], height=size[1], thumbnail=None)
    heif = pillow_heif.from_pillow(image)
    out = io.BytesIO()
    heif.save(out, quality=60, exif=exif, thumbnails=[160] if thumbnail else [])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out.getvalue())
    return path


def write_dng(path: Path, *, size: tuple[int, int] = (256, 192), orientation: int = 1) -> Path:
    """A real, minimal DNG (LibRaw opens it): a 16-bit RGGB Bayer image in a SubIFD and a red
    640x480 JPEG preview in IFD0, as DNG 1.4 lays them out."""
    from storage.samples import ASCII, BYTE, LONG, SHORT, _jpeg, _Tiff

    width, height = size
    preview = _jpeg(Image.new("RGB", (640, 480), (200, 0, 0)), quality=85)
    sensor = bytes(range(256)) * (width * height * 2 // 256)
    tiff = _Tiff()
    sensor_at = tiff.blob(sensor)
    preview_at = tiff.blob(preview)
    raw_ifd = tiff.ifd([
        (0x00FE, LONG, (0,)), (0x0100, LONG, (width,)), (0x0101, LONG, (height,)),
        (0x0102, SHORT, (16,)), (0x0103, SHORT, (1,)), (0x0106, SHORT, (32803,)),
        (0x0111, LONG, (sensor_at,)), (0x0115, SHORT, (1,)), (0x0116, LONG, (height,)),
        (0x0117, LONG, (len(sensor),)), (0x011C, SHORT, (1,)),
        (0x828D, SHORT, (2, 2)), (0x828E, BYTE, (0, 1, 1, 2)),
        (0xC61D, LONG, (65535,)),
    ])
    ifd0 = tiff.ifd([
        (0x00FE, LONG, (1,)), (0x0100, LONG, (640,)), (0x0101, LONG, (480,)),
        (0x0102, SHORT, (8, 8, 8)), (0x0103, SHORT, (7,)), (0x0106, SHORT, (6,)),
        (0x010F, ASCII, b"Cammesh Optics"), (0x0110, ASCII, b"CM-DNG"),
        (0x0111, LONG, (preview_at,)), (0x0112, SHORT, (orientation,)),
        (0x0115, SHORT, (3,)), (0x0116, LONG, (480,)), (0x0117, LONG, (len(preview),)),
        (0x014A, LONG, (raw_ifd,)),
        (0xC612, BYTE, (1, 4, 0, 0)), (0xC614, ASCII, b"Cammesh CM-DNG"),
    ])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tiff.finish(ifd0))
    return path
