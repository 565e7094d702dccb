"""A watched folder: each file imported once it is finished, exactly once, by notification
or by polling.  Ordered by events: a later, finished file reaching the peer first is what
shows an earlier, unfinished one was not taken."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import trio

from mesh.runtime import Runtime
from mesh.watch import choose_mode, open_for_writing
from protocol import events as ev
from storage.samples import write_sample_jpegs
from tests.mesh.test_runtime import two_nodes

WAIT_S = 60.0


def picture_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Peer:
    """The thumbnails the receiving node got, to wait on one by one."""

    def __init__(self, runtime: Runtime) -> None:
        self.thumbnails: list[str] = []
        self._changed = trio.Event()
        runtime.subscribe(self._seen)

    def _seen(self, event: ev.NodeEvent) -> None:
        if isinstance(event, ev.ThumbnailArrived):
            self.thumbnails.append(event.image_id)
            self._changed.set()
            self._changed = trio.Event()

    async def wait_for(self, image_id: str) -> None:
        with trio.fail_after(WAIT_S):
            while image_id not in self.thumbnails:
                await self._changed.wait()


@pytest.fixture
def handed(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every path the watcher hands to the node's import, in order."""
    paths: list[Path] = []
    real = Runtime.import_pictures

    async def recording(self: Runtime, todo: Sequence[Path], **kwargs: Any) -> Any:
        paths.extend(todo)
        return await real(self, todo, **kwargs)

    monkeypatch.setattr(Runtime, "import_pictures", recording)
    return paths


@pytest.mark.parametrize("mode", ["notify", "poll"])
async def test_a_watched_file_is_imported_once_it_is_closed_and_exactly_once(
    tmp_path: Path, mode: str, handed: list[Path]
) -> None:
    dcim = tmp_path / "DCIM"
    first, second, third, fourth = (p.read_bytes() for p in
                                    write_sample_jpegs(tmp_path / "camera", 4, seed=21))
    async with two_nodes(tmp_path, watch=dcim, watch_mode=mode) as (ra, rb):
        peer = Peer(rb)
        slow = (dcim / "IMG_0001.JPG").open("wb")  # the camera is still writing this one
        try:
            slow.write(first[: len(first) // 2])
            slow.flush()
            await trio.sleep(0)
            (dcim / "IMG_0002.JPG").write_bytes(second)  # opened, written, closed after
            await peer.wait_for(picture_id(second))
            # Both files were named to the watcher, the half one first (and in poll mode its
            # size has held still since); had it taken the half, it would be on the card.
            assert handed == [dcim / "IMG_0002.JPG"]
            slow.write(first[len(first) // 2:])
        finally:
            slow.close()
        await peer.wait_for(picture_id(first))
        # Touched again, the same bytes: at most looked at again, never a second picture.
        os.utime(dcim / "IMG_0001.JPG")
        (dcim / "IMG_0003.JPG").write_bytes(third)
        await peer.wait_for(picture_id(third))
        (dcim / "sub").mkdir()
        (dcim / "sub" / "IMG_0004.JPG").write_bytes(fourth)
        await peer.wait_for(picture_id(fourth))
        images = await ra.call(ra.card.images)
    assert {i.image_id for i in images} == {picture_id(d) for d in (first, second, third, fourth)}
    assert peer.thumbnails.count(picture_id(first)) == 1
    for name in ("IMG_0002.JPG", "IMG_0003.JPG", "sub/IMG_0004.JPG"):
        assert handed.count(dcim / name) == 1, (name, handed)
    assert 1 <= handed.count(dcim / "IMG_0001.JPG") <= 2


@pytest.mark.parametrize("mode", ["notify", "poll"])
async def test_a_file_renamed_into_the_folder_is_imported_and_its_temporary_name_never(
    tmp_path: Path, mode: str, handed: list[Path]
) -> None:
    dcim = tmp_path / "DCIM"
    moved, copied, later = write_sample_jpegs(tmp_path / "camera", 3, seed=22)
    async with two_nodes(tmp_path, watch=dcim, watch_mode=mode) as (ra, rb):
        peer = Peer(rb)
        os.rename(moved, dcim / moved.name)  # finished elsewhere, moved in: finished here
        await peer.wait_for(picture_id((dcim / moved.name).read_bytes()))
        # A copy tool's way: a hidden temporary, closed, later renamed to its name.
        temporary = dcim / f".{copied.name}.tmp"
        temporary.write_bytes(copied.read_bytes())
        (dcim / later.name).write_bytes(later.read_bytes())
        await peer.wait_for(picture_id(later.read_bytes()))
        assert temporary not in handed  # closed and still there, but not under its name
        os.rename(temporary, dcim / copied.name)
        await peer.wait_for(picture_id(copied.read_bytes()))
        images = await ra.call(ra.card.images)
    assert handed == [dcim / moved.name, dcim / later.name, dcim / copied.name]
    assert len(images) == 3


async def test_polling_where_the_kernel_cannot_tell_waits_for_the_file_to_hold_still(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, handed: list[Path]
) -> None:
    import mesh.watch

    dcim = tmp_path / "DCIM"
    first, second = (p.read_bytes() for p in write_sample_jpegs(tmp_path / "camera", 2, seed=24))
    step = len(first) // 64  # a piece per look: enough for half a minute of polls
    pieces = [first[i:i + step] for i in range(0, len(first), step)]
    slow = dcim / "IMG_0001.JPG"
    writer: list[int] = []

    def cannot_tell(path: Path) -> None:
        # A share: no lease to ask.  The camera writes a piece between any two looks.
        if path == slow and writer and pieces:
            os.write(writer[0], pieces.pop(0))
        return None

    monkeypatch.setattr(mesh.watch, "open_for_writing", cannot_tell)
    async with two_nodes(tmp_path, watch=dcim, watch_mode="poll") as (_, rb):
        peer = Peer(rb)
        writer.append(os.open(slow, os.O_WRONLY | os.O_CREAT | os.O_APPEND))
        try:
            os.write(writer[0], pieces.pop(0))
            (dcim / "IMG_0002.JPG").write_bytes(second)
            await peer.wait_for(picture_id(second))
            assert handed == [dcim / "IMG_0002.JPG"] and pieces  # still growing: not taken
            os.write(writer[0], b"".join(pieces))
            pieces.clear()
        finally:
            os.close(writer.pop())
        await peer.wait_for(picture_id(first))
    assert handed == [dcim / "IMG_0002.JPG", slow]


async def test_a_watched_folder_removed_and_made_again_is_watched_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import shutil

    dcim = tmp_path / "DCIM"
    before, after = write_sample_jpegs(tmp_path / "camera", 2, seed=25)

    async def logged(text: str) -> None:
        with trio.fail_after(WAIT_S):
            while not any(text in r.getMessage() for r in caplog.records):
                await trio.sleep(0.01)

    with caplog.at_level(logging.INFO, logger="cammesh.watch"):
        async with two_nodes(tmp_path, watch=dcim, watch_mode="notify") as (_, rb):
            peer = Peer(rb)
            (dcim / before.name).write_bytes(before.read_bytes())
            await peer.wait_for(picture_id(before.read_bytes()))
            shutil.rmtree(dcim)  # the card reader's card taken out
            await logged("is gone; waiting for it to come back")
            dcim.mkdir()
            await logged("was removed and is back")
            (dcim / after.name).write_bytes(after.read_bytes())
            await peer.wait_for(picture_id(after.read_bytes()))


async def test_auto_polls_where_notifications_cannot_be_set_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import watchfiles

    def refused(*args: object, **kwargs: object) -> object:
        # What watchfiles raises when inotify runs out (EMFILE: max_user_instances reached).
        raise RuntimeError("Error creating recommended watcher: Too many open files (os error 24)")

    monkeypatch.setattr(watchfiles, "awatch", refused)
    dcim = tmp_path / "DCIM"
    (picture,) = write_sample_jpegs(tmp_path / "camera", 1, seed=23)
    with caplog.at_level(logging.INFO, logger="cammesh.watch"):
        async with two_nodes(tmp_path, watch=dcim) as (_, rb):
            peer = Peer(rb)
            (dcim / picture.name).write_bytes(picture.read_bytes())
            await peer.wait_for(picture_id(picture.read_bytes()))
    assert any("polling every" in r.getMessage() and "could not be set up" in r.getMessage()
               for r in caplog.records)


def test_auto_polls_on_network_and_fuse_filesystems_and_notifies_on_local_ones(
    tmp_path: Path,
) -> None:
    share, local = tmp_path / "share" / "DCIM", tmp_path / "local"
    share.mkdir(parents=True)
    local.mkdir()
    mountinfo = tmp_path / "mountinfo"

    def mounted(kind: str) -> None:
        # /proc/self/mountinfo lines: the mount point is field 5, the type follows the "-".
        mountinfo.write_text(
            "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
            f"40 22 0:50 / {tmp_path.resolve() / 'share'} rw shared:9 - {kind} srv:/x rw\n")

    for kind, expected in (("nfs4", "poll"), ("cifs", "poll"), ("fuse.sshfs", "poll"),
                           ("vfat", "notify"), ("ext4", "notify")):
        mounted(kind)
        assert choose_mode(share, "auto", mountinfo=mountinfo)[0] == expected, kind
        assert choose_mode(local, "auto", mountinfo=mountinfo)[0] == "notify"
    assert choose_mode(share, "notify", mountinfo=mountinfo)[0] == "notify"  # the flag wins
    assert choose_mode(local, "poll", mountinfo=mountinfo)[0] == "poll"
    with pytest.raises(ValueError, match="choose one of"):
        choose_mode(local, "inotify")


def test_the_kernel_tells_whether_a_file_is_still_open_for_writing(tmp_path: Path) -> None:
    path = tmp_path / "IMG.JPG"
    with path.open("wb") as f:
        f.write(b"half")
        assert open_for_writing(path) is True
    assert open_for_writing(path) is False
    with path.open("r+b"):
        assert open_for_writing(path) is True
    with path.open("rb"):
        assert open_for_writing(path) is False  # readers are not writers
    assert open_for_writing(tmp_path / "gone.JPG") is None
