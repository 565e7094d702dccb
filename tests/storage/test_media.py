"""Movies, HEIF and RAW (cammesh[media]): keyframe strips, embedded previews, hostile movies."""

from __future__ import annotations

import io
import os
import random
import struct
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image

av = pytest.importorskip("av", reason="the media extra (cammesh[media]) is not installed")
pillow_heif = pytest.importorskip("pillow_heif", reason="cammesh[media] is not installed")
rawpy = pytest.importorskip("rawpy", reason="cammesh[media] is not installed")

from storage import movie_samples  # noqa: E402
from storage.card import Card  # noqa: E402
from storage.importer import import_paths  # noqa: E402
from storage.movies import (  # noqa: E402
    MEDIA_HINT,
    POSTER_SIDE,
    STRIP_SIDE,
    StripSettings,
    extract_movie,
)
from storage.raw_previews import from_rawpy  # noqa: E402
from storage.thumbnails import MAX_SIDE, extract  # noqa: E402

CUTS = (15.3, 31.7, 47.2)


def colour_of(jpeg: bytes) -> tuple[int, int, int]:
    with Image.open(io.BytesIO(jpeg)) as image:
        assert image.format == "JPEG"
        pixel = image.convert("RGB").getpixel((image.width // 2, image.height // 2))
    assert isinstance(pixel, tuple)
    return (int(pixel[0]), int(pixel[1]), int(pixel[2]))


def near(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return all(abs(x - y) < 40 for x, y in zip(a, b, strict=True))


def keyframes(path: Path) -> list[tuple[float, int]]:
    """(presentation time, byte offset) of every keyframe packet, by a plain demux."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [(round(float(p.pts * stream.time_base), 3), p.pos)
                for p in container.demux(stream) if p.is_keyframe and p.pts is not None]


@pytest.fixture(scope="module")
def movie_1080p(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("movies") / "C0001.MP4"
    return movie_samples.write_movie(path, seconds=60, size=(1920, 1080), cuts=CUTS)


def test_a_60s_1080p_movie_gets_interval_frames_and_exactly_its_three_scene_frames(
    movie_1080p: Path,
) -> None:
    got = extract(movie_1080p)
    assert (got.mime, got.thumbnail_source, got.reason) == ("video/mp4", "keyframe", None)
    keys = dict(keyframes(movie_1080p))
    strip = got.strip
    # The encoder put a keyframe at each cut (frame round(cut * 25)): those, and only those,
    # are the scene frames.
    assert [f.time for f in strip if f.kind == "scene"] == [15.28, 31.68, 47.2]
    # One every 10 s: the first keyframe at or after each multiple of 10 still to fill.
    assert [f.time for f in strip if f.kind == "interval"] == [0.0, 10.0, 21.28, 31.28,
                                                              41.68, 51.2]
    assert [f.time for f in strip] == sorted(f.time for f in strip)
    for frame in strip:
        assert keys[frame.time] == frame.offset  # playable from its keyframe's packet
        scene = sum(1 for cut in CUTS if frame.time >= round(cut * 25) / 25)
        assert near(colour_of(frame.jpeg), movie_samples.COLOURS[scene])
        with Image.open(io.BytesIO(frame.jpeg)) as image:
            assert image.size == (STRIP_SIDE, 90)
    with Image.open(io.BytesIO(got.thumbnail)) as poster:
        assert poster.size == (POSTER_SIDE, 180)
    assert near(colour_of(got.thumbnail), movie_samples.COLOURS[0])
    created = datetime.fromisoformat("2026-12-07T09:30:00+00:00").timestamp()
    assert got.capture_time == created
    assert {k: got.metadata[k] for k in ("duration", "width", "height", "frame_rate", "codec")} \
        == {"duration": 60.0, "width": 1920, "height": 1080, "frame_rate": 25.0, "codec": "h264"}


def test_the_strip_decodes_little_more_than_its_own_frames(movie_1080p: Path) -> None:
    """Never a full decode: 32 keyframes in 60 s, of which the strip's nine and the last one
    (a cut after the last probe) are decoded.  The encoder put each cut's keyframe off the GOP
    cadence, which says the keyframe before it is of the old scene: that one is not decoded."""
    movie = extract_movie(movie_1080p)
    assert len(keyframes(movie_1080p)) == 32 and len(movie.strip) == 9
    assert movie.keyframes_decoded == len(movie.strip) + 1


def test_with_a_fixed_gop_a_cut_is_found_at_the_first_keyframe_after_it(tmp_path: Path) -> None:
    """A camera whose GOP is fixed puts no keyframe at a cut: the scene frame is the first
    keyframe of the new scene, found by decoding (the packets say nothing)."""
    path = movie_samples.write_movie(tmp_path / "fixed.mp4", seconds=24, size=(320, 180),
                                     gop_s=1.0, cuts=(4.5, 16.2), keyframe_at_cuts=False)
    assert [t for t, _ in keyframes(path)] == [float(n) for n in range(24)]
    movie = extract_movie(path)
    assert [(f.time, f.kind) for f in movie.strip] == [
        (0.0, "interval"), (5.0, "scene"), (10.0, "interval"), (17.0, "scene"),
        (20.0, "interval")]
    for frame, scene in zip(movie.strip, (0, 1, 1, 2, 2), strict=True):
        assert near(colour_of(frame.jpeg), movie_samples.COLOURS[scene])


def test_strip_times_are_the_keyframes_own_in_a_movie_with_b_frames(tmp_path: Path) -> None:
    """Told to discard non-keyframes, the MP4 demuxer gives a movie with B-frames keyframe
    times a few frames off (1.12 s for 1.0 s): the strip must not believe them."""
    path = movie_samples.write_movie(tmp_path / "b.mp4", seconds=8, size=(320, 180),
                                     preset="superfast", gop_s=1.0, cuts=(3.0,))
    keys = dict(keyframes(path))
    assert list(keys) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    movie = extract_movie(path)
    assert [(f.time, f.kind) for f in movie.strip] == [(0.0, "interval"), (3.0, "scene")]
    assert all(keys[f.time] == f.offset for f in movie.strip)


def test_a_movie_that_gives_no_strip_is_a_storage_error() -> None:
    from protocol.errors import CammeshError
    from storage.errors import MovieUnusable, StoreError

    assert issubclass(MovieUnusable, StoreError) and issubclass(MovieUnusable, CammeshError)


def test_interval_and_cap_are_configurable(movie_1080p: Path) -> None:
    every_20 = extract_movie(movie_1080p, StripSettings(every_s=20.0))
    assert [f.time for f in every_20.strip if f.kind == "interval"] == [0.0, 21.28, 41.68]
    capped = extract_movie(movie_1080p, StripSettings(max_frames=4))
    assert len(capped.strip) <= 4
    assert capped.strip[0].time == 0.0


def test_an_h265_clip_gets_its_strip(tmp_path: Path) -> None:
    path = movie_samples.write_movie(tmp_path / "clip.mov", seconds=10, size=(640, 360),
                                     codec="libx265", cuts=(4.0,))
    got = extract(path)
    assert got.thumbnail_source == "keyframe" and got.metadata["codec"] == "hevc"
    keys = keyframes(path)
    first_after_cut = min(t for t, _ in keys if t >= 4.0)
    assert [f.time for f in got.strip if f.kind == "scene"] == [first_after_cut]
    assert near(colour_of(got.strip[-1].jpeg), movie_samples.COLOURS[1])
    assert near(colour_of(got.thumbnail), movie_samples.COLOURS[0])


def test_a_sony_proxy_is_decoded_and_offsets_point_into_the_main_clip(tmp_path: Path) -> None:
    main = movie_samples.write_sony_clip(tmp_path / "M4ROOT", seconds=6.0, cuts=(3.0,))
    got = extract(main)
    assert got.metadata["proxy"] == "C0001S03.MP4"
    assert (got.width, got.height) == (640, 360)  # the main clip's, not the proxy's 160x90
    main_keys = keyframes(main)
    for frame in got.strip:
        assert frame.offset == max((t, pos) for t, pos in main_keys if t <= frame.time)[1]
    assert [f.kind for f in got.strip] == ["interval", "scene"]


def test_an_imported_movie_keeps_its_strip_and_its_poster_is_the_thumbnail(
    tmp_path: Path, movie_1080p: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "C0001.MP4").write_bytes(movie_1080p.read_bytes())
    with Card.create(tmp_path / "card", device_id="a" * 64, name="cam", capacity=10**9) as card:
        summary = import_paths(card, [folder], now=1.0)
        [imported] = summary.imported
        assert imported.thumbnail_source == "keyframe" and imported.reason is None
        record = card.image(imported.image_id)
        assert record is not None and record.mime == "video/mp4"
        strip = card.strip(imported.image_id)
        assert [f.kind for f in strip].count("scene") == 3
        assert record.thumbnail == extract(movie_1080p).thumbnail
        assert card.strip_lengths() == {imported.image_id: len(strip)}
    with Card.open(tmp_path / "card") as card:
        assert card.strip(imported.image_id) == strip  # durable across a reopen


def test_a_missing_media_extra_gives_placeholders_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    movie_samples.write_movie(tmp_path / "in" / "clip.mp4", seconds=2)
    movie_samples.write_heif(tmp_path / "in" / "pic.heic", thumbnail=True)
    raf = tmp_path / "in" / "pic.RAF"
    raf.write_bytes(b"FUJIFILMCCD-RAW 0201FF383501" + bytes(4000))
    for name in ("av", "pillow_heif", "rawpy"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError
    with Card.create(tmp_path / "card", device_id="b" * 64, name="cam", capacity=10**9) as card:
        summary = import_paths(card, [tmp_path / "in"], now=1.0)
        reasons = {Path(i.path).name: (i.thumbnail_source, i.reason) for i in summary.imported}
        assert not summary.rejected
    assert reasons["clip.mp4"][0] == "placeholder"
    assert MEDIA_HINT in (reasons["clip.mp4"][1] or "")
    assert "install cammesh[media] to see HEIF thumbnails" in (reasons["pic.heic"][1] or "")
    assert "install cammesh[media]" in (reasons["pic.RAF"][1] or "")


@pytest.mark.parametrize("embedded", [True, False], ids=["embedded", "decoded"])
def test_heif_thumbnails_are_upright_and_carry_metadata(tmp_path: Path, embedded: bool) -> None:
    path = movie_samples.write_heif(tmp_path / "IMG_0001.HEIC", thumbnail=embedded,
                                    orientation=6)
    got = extract(path)
    assert got.mime == "image/heic"
    assert got.thumbnail_source == ("embedded" if embedded else "decoded")
    with Image.open(io.BytesIO(got.thumbnail)) as image:
        image = image.convert("RGB")
        assert image.height > image.width  # orientation 6: stored landscape, shown portrait
        assert max(image.size) <= MAX_SIDE
        top, bottom = image.getpixel((image.width // 2, 5)), image.getpixel(
            (image.width // 2, image.height - 5))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert near(top, (220, 0, 0)) and near(bottom, (0, 0, 220))  # the left half went on top
    assert got.metadata["make"] == "Cammesh Optics" and got.capture_time == 1_700_000_000.0


def test_a_dng_libraw_reads_gets_its_embedded_preview(tmp_path: Path) -> None:
    path = movie_samples.write_dng(tmp_path / "IMG_0001.DNG", orientation=6)
    with rawpy.imread(str(path)) as raw:  # a real DNG: LibRaw opens it and finds the preview
        assert (raw.sizes.raw_width, raw.sizes.raw_height) == (256, 192)
        assert raw.extract_thumb().format == rawpy.ThumbFormat.JPEG
    with path.open("rb") as file:
        through_libraw = from_rawpy(file, "image/x-adobe-dng", None)
    for got in (extract(path), through_libraw):
        assert (got.mime, got.thumbnail_source) == ("image/x-adobe-dng", "raw-preview")
        assert near(colour_of(got.thumbnail), (200, 0, 0))
        with Image.open(io.BytesIO(got.thumbnail)) as image:
            assert image.size == (240, 320)  # 640x480 preview turned upright (orientation 6)
        assert (got.metadata["width"], got.metadata["height"]) == (256, 192)


def test_a_raw_libraw_cannot_read_is_a_placeholder_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "DSCF0001.RAF"
    path.write_bytes(b"FUJIFILMCCD-RAW 0201FF383501" + random.Random(1).randbytes(8000))
    got = extract(path)
    assert (got.mime, got.thumbnail_source) == ("image/x-fuji-raf", "placeholder")
    assert "LibRaw cannot read it" in (got.reason or "")


# --- hostile movies ---------------------------------------------------------------------


def _patch_box(data: bytearray, box: bytes, at: int, value: bytes) -> None:
    start = data.find(box)
    assert start > 0
    data[start + 4 + at : start + 4 + at + len(value)] = value


def hostile_movies(folder: Path) -> dict[str, Path]:
    good = movie_samples.write_movie(folder / "good.mp4", seconds=4, cuts=(2.0,)).read_bytes()
    files: dict[str, bytes] = {"truncated.mp4": good[: len(good) // 2]}  # moov is at the end
    huge_duration = bytearray(good)  # movie and track headers both claim ~136 years
    _patch_box(huge_duration, b"mvhd", 12, struct.pack(">II", 1, 0xFFFFFFFF))
    _patch_box(huge_duration, b"mdhd", 12, struct.pack(">II", 1, 0xFFFFFFFF))
    files["huge-duration.mp4"] = bytes(huge_duration)
    huge_size = bytearray(good)
    start = huge_size.find(b"mdat") - 4
    huge_size[start : start + 4] = struct.pack(">I", 0xFFFFFFF0)
    files["huge-size.mp4"] = bytes(huge_size)
    corrupt = bytearray(good)
    rng = random.Random(7)
    for time_s, pos in keyframes(folder / "good.mp4"):
        if time_s > 0:
            corrupt[pos + 8 : pos + 400] = rng.randbytes(392)
    files["corrupt-frames.mp4"] = bytes(corrupt)
    files["header-only.mp4"] = good[:32]
    files["zero.mp4"] = b""
    (folder / "good.mp4").unlink()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return {name: folder / name for name in files}


def test_hostile_movies_import_with_a_placeholder_and_a_reason(tmp_path: Path) -> None:
    files = hostile_movies(tmp_path / "hostile")
    for name, path in files.items():
        started = time.monotonic()
        got = extract(path)  # the import's own path: the real child process
        assert time.monotonic() - started < 10, name  # far inside the 30 s hard timeout
        assert got.thumbnail and got.reason, name
        if name == "corrupt-frames.mp4":  # the first keyframe is whole: a strip, damage noted
            assert got.thumbnail_source == "keyframe"
            assert "damaged keyframe skipped" in got.reason
            continue
        if name == "huge-duration.mp4":  # the lie is not believed; the real frames still are
            assert got.thumbnail_source == "keyframe"
            assert float(got.metadata.get("duration") or 0) <= 4.0
            continue
        assert got.thumbnail_source == "placeholder", name
        assert got.reason, name
    with Card.create(tmp_path / "card", device_id="c" * 64, name="cam", capacity=10**9) as card:
        summary = import_paths(card, [tmp_path / "hostile"], now=1.0)
        assert not summary.rejected  # a zero-length movie too: a placeholder and its reason
        assert len(summary.imported) == len(files)
        empty = next(r for r in card.images() if r.size == 0)
    assert empty.mime == "video/mp4" and empty.thumbnail
    assert extract(files["zero.mp4"]).reason == "empty movie file (0 bytes): nothing was recorded into it"


def test_an_import_stops_a_movie_walk_at_its_deadline_and_kills_it_at_its_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the import path and its real child process: a movie that would keep the
    decoder busy past the walk's deadline gives what it found with the reason; one whose
    child outlives the hard timeout is killed, a placeholder with the reason; neither stops
    the import, and each ends within its bound."""
    from storage import thumbnails

    folder = tmp_path / "in"
    movie_samples.write_movie(folder / "intra.mp4", seconds=20, size=(640, 360), gop_s=0.04)
    monkeypatch.setattr(thumbnails, "MOVIE_SETTINGS", StripSettings(deadline_s=0.3, probe_s=0))
    with Card.create(tmp_path / "card", device_id="e" * 64, name="cam", capacity=10**9) as card:
        started = time.monotonic()
        [walked] = import_paths(card, [folder], now=1.0).imported
        walk_s = time.monotonic() - started
        assert (walked.thumbnail_source, walked.reason) == (
            "keyframe", "stopped at the 0.3 s deadline")
        assert 0 < len(card.strip(walked.image_id)) < 20
        monkeypatch.setattr(thumbnails, "MOVIE_TIMEOUT_S", 0.01)
        (folder / "intra.mp4").rename(folder / "again.mp4")
        with (folder / "again.mp4").open("ab") as file:
            file.write(b"\0")  # another picture (another hash), the same movie
        started = time.monotonic()
        [killed] = import_paths(card, [folder], now=2.0).imported
        kill_s = time.monotonic() - started
    assert killed.thumbnail_source == "placeholder"
    assert killed.reason == "the decoder did not finish within 0.01 s and was stopped"
    assert walk_s < 15 and kill_s < 5  # the child's start-up, the bound, the hashing


def test_a_read_that_never_returns_is_killed_at_the_hard_timeout(tmp_path: Path) -> None:
    """A real FFmpeg in the real child blocked for ever (a FIFO nobody writes: open() never
    returns, so FFmpeg's own timeout never runs): the kill is what ends it."""
    from storage.movie_process import extract_movie_isolated
    from storage.movies import MovieUnusable

    fifo = tmp_path / "stuck.mp4"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(MovieUnusable, match=r"did not finish within 2 s and was stopped"):
        extract_movie_isolated(fifo, hard_timeout_s=2.0)
    assert time.monotonic() - started < 6


def test_a_movie_that_never_ends_is_stopped_by_the_deadline_and_the_packet_bound(
    tmp_path: Path,
) -> None:
    """A demux that would go on (here: an all-keyframe movie) stops at either bound, keeping
    what it found, or gives a placeholder's reason when it found nothing."""
    path = tmp_path / "intra.mp4"
    movie_samples.write_movie(path, seconds=8, gop_s=0.04)  # every frame a keyframe
    assert len(keyframes(path)) == 200
    bounded = extract_movie(path, StripSettings(max_packets=5))
    assert bounded.reason == "stopped after 5 packets" and len(bounded.strip) == 1
    with pytest.raises(Exception, match="deadline"):
        extract_movie(path, StripSettings(deadline_s=0.0))


def test_a_card_from_before_strips_upgrades_and_keeps_strips_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from storage import catalog as catalog_module
    from storage.movies import StripFrame

    path = tmp_path / "card"
    monkeypatch.setattr(catalog_module, "MIGRATIONS", catalog_module.MIGRATIONS[:3])
    with Card.create(path, device_id="d" * 64, name="cam", capacity=10**9) as card:
        old = card.add_local(b"an old picture", name="a.jpg", now=1.0)
        assert card._catalog.version == 3
    monkeypatch.undo()
    frames = [StripFrame(0.0, 48, "interval", b"\xff\xd8poster"),
              StripFrame(4.0, 9000, "scene", b"\xff\xd8cut")]
    with Card.open(path) as card:
        assert card._catalog.version == len(catalog_module.MIGRATIONS) >= 4
        assert card.strip(old.image_id) == []
        card.set_strip(old.image_id, frames)
    with Card.open(path) as card:
        assert card.strip(old.image_id) == frames
        with pytest.raises(Exception, match="not in the catalog"):
            card.set_strip("e" * 64, frames)


def test_sparse_probes_still_find_each_cut_at_its_own_keyframe(movie_1080p: Path) -> None:
    """Probing one keyframe in 10 s, the keyframes between are bisected when a cut is seen."""
    dense = extract_movie(movie_1080p, StripSettings(probe_s=0.0))
    sparse = extract_movie(movie_1080p, StripSettings(probe_s=10.0))
    for movie in (dense, sparse):
        assert [f.time for f in movie.strip if f.kind == "scene"] == [15.28, 31.68, 47.2]
    assert dense.keyframes_decoded == len(keyframes(movie_1080p)) == 32
    assert sparse.keyframes_decoded < dense.keyframes_decoded // 2
    assert [(f.time, f.offset, f.jpeg) for f in sparse.strip] == \
        [(f.time, f.offset, f.jpeg) for f in dense.strip]


def test_a_decoder_that_hangs_or_crashes_is_only_a_reason(tmp_path: Path) -> None:
    """Extraction runs in a child process: one that never returns is killed at the hard
    timeout, one that dies by a signal (a crash inside FFmpeg) is reported, and the caller
    goes on either way."""
    from storage.movie_process import extract_movie_isolated
    from storage.movies import MovieUnusable

    path = movie_samples.write_movie(tmp_path / "clip.mp4", seconds=2)
    hang = [sys.executable, "-c", "import time; time.sleep(60)"]
    with pytest.raises(MovieUnusable, match=r"did not finish within 0\.5 s"):
        extract_movie_isolated(path, hard_timeout_s=0.5, command=hang)
    crash = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]
    with pytest.raises(MovieUnusable, match="crashed on this file \\(SIGSEGV\\)"):
        extract_movie_isolated(path, command=crash)
    movie = extract_movie_isolated(path)  # the real child gives what the walk gives in-process
    assert movie == extract_movie(path)


@pytest.mark.parametrize(("name", "packet"), [("00001.MTS", 188), ("00002.m2ts", 192)])
def test_a_transport_stream_without_an_index_gets_its_strip(
    tmp_path: Path, name: str, packet: int
) -> None:
    """FFmpeg writes 188-byte packets for .MTS and 192-byte ones (timestamped) for .m2ts."""
    path = movie_samples.write_movie(tmp_path / name, seconds=6, cuts=(3.0,))
    got = extract(path)
    assert (got.mime, got.thumbnail_source) == ("video/mp2t", "keyframe")
    assert [f.kind for f in got.strip] == ["interval", "scene"]
    assert all(f.offset is not None and f.offset % packet == 0 for f in got.strip)


def test_a_card_lists_other_devices_movies_whose_strip_never_came(tmp_path: Path) -> None:
    """protocol.store.StripShelf.strips_missing: what a desk asks for when a link is back."""
    from protocol.store import ImageRecord, Where
    from storage.movies import StripFrame

    peer = "b" * 64

    def offered(image_id: str, seq: int, mime: str, metadata: dict[str, object]) -> None:
        card.add_thumbnail(ImageRecord(image_id, peer, seq, "C0001.MP4", 10_000, mime, None,
                                       metadata, b"poster", Where.ABSENT), float(seq))

    with Card.create(tmp_path / "card", device_id="d" * 64, name="desk",
                     capacity=10**9) as card:
        offered("1" * 64, 1, "video/mp4", {"strip_frames": 3, "duration": 12.0})
        offered("2" * 64, 2, "video/quicktime", {"strip_frames": 2})
        offered("3" * 64, 3, "video/mp4", {"duration": 4.0})  # no strip was made for it
        offered("4" * 64, 4, "image/jpeg", {"strip_frames": 3})  # a still is no movie
        card.add_local(b"our own picture", name="a.jpg", now=9.0)
        assert card.strips_missing() == ["2" * 64, "1" * 64]  # the newest first
        card.set_strip("2" * 64, [StripFrame(0.0, 48, "interval", b"\xff\xd8p")])
        assert card.strips_missing() == ["1" * 64]
