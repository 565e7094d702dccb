"""``--watch DIR``: files finished in a folder (a tethered camera's or a card reader's DCIM)
become captures, each imported once, never half-written.

Two ways to learn of a file, chosen by ``--watch-mode`` (docs/ARCHITECTURE.md, "The watched
folder"):

- **notify** (Linux inotify through watchfiles): a change wakes the watcher within about
  ``STEP_MS``.  watchfiles reports only added / modified / deleted, never "closed after
  writing", so each file it names is then asked of the kernel: is any process still holding
  it open for writing?  (A read lease, ``F_SETLEASE``, is refused exactly then.)  A file still
  open is looked at again, soon and then less often, until no writer is left; a file renamed
  or moved into the folder was closed already.  Where the kernel will not say (a file of
  another user, a filesystem without leases) the file must keep its size and modification
  time for ``QUIET_S`` instead.
- **poll**: the folder is listed every ``POLL_S``; a file is finished once its size and
  modification time held still from one look to the next (and, where the kernel can tell,
  no one has it open for writing).  For filesystems whose writers notifications never see:
  network shares, and FAT/exFAT written by another machine.

``auto`` (the default) polls a folder on a network or FUSE filesystem, or where
notifications cannot be set up, and uses notifications everywhere else.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import logging
import math
import os
import signal
import stat
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import trio

log = logging.getLogger("cammesh.watch")

WATCH_MODES = ("auto", "notify", "poll")
# watchfiles hands a batch out once it stopped growing for one step: a step of 10 ms puts a
# change in our hands 10-20 ms after it happened, for 0.3 % of one core while idle (0.2 % at
# its default step; measured on this project's 2-core machine).
# Its defaults (50 ms step, 1,600 ms debounce) alone would cost a third of the 150 ms budget
# of a new picture's thumbnail (issue 13).
STEP_MS = 10
DEBOUNCE_MS = 50  # the longest a batch is held back while changes keep coming
RESCAN_S = 10.0  # notify mode: a full look now and then, a safety net for a missed event
POLL_S = 0.5
QUIET_S = 0.5  # where the kernel cannot say whether a file is still being written
RECHECK_S = (0.01, 0.2)  # a file still open for writing: looked at again, backing off

# Writers on other machines change these without a notification reaching this one.
REMOTE_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "virtiofs", "vboxsf", "ceph", "afs",
    "glusterfs", "lustre", "gfs2", "ocfs2", "davfs", "fuse.sshfs", "fuse.rclone", "fuse.s3fs",
    "fuse.gcsfuse", "fuse.davfs2",
})
# Names that are still on their way: hidden temporaries (rsync, many copy tools) and the
# partial-download suffixes; the rename to the final name is the file being finished.
PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".download")

Signature = tuple[int, int, int]  # size, mtime in ns, inode
OnFinished = Callable[[list[Path]], Awaitable[object]]


def finished_name(path: Path, folder: Path | None = None) -> bool:
    """False for names that stand for a file still on its way (see ``PARTIAL_SUFFIXES``),
    and for anything in a hidden folder under ``folder``."""
    name = path.name
    if folder is not None and path.is_relative_to(folder) and any(
            part.startswith(".") for part in path.relative_to(folder).parts[:-1]):
        return False
    return not (name.startswith(".") or name.endswith("~")
                or name.lower().endswith(PARTIAL_SUFFIXES))


def open_for_writing(path: Path) -> bool | None:
    """True while some process on this machine holds ``path`` open for writing, False once
    none does; None where the kernel will not say (not our file, no leases there).

    Linux grants a read lease only on a file nobody has open for writing (fcntl(2),
    F_SETLEASE), which is what inotify's IN_CLOSE_WRITE means and watchfiles cannot tell.
    The lease is dropped at once; a writer opening the file in between would make the kernel
    signal us, so the lease signals SIGURG, which is ignored unless handled.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
        try:
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EBUSY):
                return True
            return None  # EACCES: another user's file; EINVAL: no leases on this filesystem
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        return False
    except OSError:
        return None
    finally:
        os.close(fd)


def filesystem_of(folder: Path, *, mountinfo: Path = Path("/proc/self/mountinfo")) -> str | None:
    """The type of the filesystem ``folder`` is on (``ext4``, ``nfs4``...), None if unknown."""
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return None
    target = str(folder.resolve())
    best, kind = -1, None
    for line in lines:
        fields = line.split()
        if "-" not in fields:
            continue
        point = fields[4].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) > best:
            best, kind = len(point), fields[fields.index("-") + 1]
    return kind


def choose_mode(folder: Path, requested: str, *,
                mountinfo: Path = Path("/proc/self/mountinfo")) -> tuple[str, str]:
    """("notify" or "poll", why) for ``--watch-mode requested``."""
    if requested not in WATCH_MODES:
        raise ValueError(f"--watch-mode {requested!r}: choose one of {', '.join(WATCH_MODES)}")
    if requested != "auto":
        return requested, f"--watch-mode {requested}"
    kind = filesystem_of(folder, mountinfo=mountinfo)
    if kind is not None and (kind in REMOTE_FILESYSTEMS or kind.startswith("fuse.")):
        return "poll", f"{folder} is on {kind}: notifications miss other machines' writes"
    return "notify", f"{folder} is on {kind or 'a local filesystem'}"


@dataclass(frozen=True, slots=True)
class _News:
    """What the watcher learnt: files named by a change, files deleted, or "look at all"."""

    named: tuple[Path, ...] = ()
    gone: tuple[Path, ...] = ()
    everything: bool = False


EVERYTHING = _News(everything=True)


@dataclass(slots=True)
class _Seen:
    """A file looked at and not imported yet."""

    signature: Signature
    since: float  # when it was first seen with this signature
    again_at: float  # when to look again without being told
    backoff: float


class _Judge:
    """Which files are finished: the one place that decides, for both modes."""

    def __init__(self, *, poll: bool) -> None:
        self.poll = poll
        self.seen: dict[Path, _Seen] = {}
        self.done: dict[Path, Signature] = {}

    def forget(self, path: Path) -> None:
        self.seen.pop(path, None)
        self.done.pop(path, None)

    def next_look(self) -> float:
        return min((s.again_at for s in self.seen.values()), default=math.inf)

    def due(self, now: float) -> list[Path]:
        return [p for p, s in self.seen.items() if s.again_at <= now]

    def judge(self, paths: Iterable[Path], now: float, *,
              named: frozenset[Path] = frozenset()) -> list[Path]:
        """The finished ones of ``paths`` (runs in a worker thread: it stats and opens).

        ``named``: those a change event named just now, still being written, so soon closed.
        """
        finished: list[tuple[int, Path]] = []
        for path in set(paths):
            try:
                st = path.lstat()
            except OSError:
                self.forget(path)
                continue
            sig = (st.st_size, st.st_mtime_ns, st.st_ino)
            if not stat.S_ISREG(st.st_mode) or st.st_size == 0 or self.done.get(path) == sig:
                self.seen.pop(path, None)  # a folder, a link, not written yet, or imported
                continue
            if self._finished(path, sig, now, fresh=path in named):
                # Done as judged: a change from now on (even during the import) is news.
                self.seen.pop(path, None)
                self.done[path] = sig
                finished.append((st.st_mtime_ns, path))
        return [path for _, path in sorted(finished)]

    def _finished(self, path: Path, sig: Signature, now: float, *, fresh: bool) -> bool:
        before = self.seen.get(path)
        writing = open_for_writing(path)
        if writing is False and not self.poll:
            return True
        if writing is True:
            # The close raises no event we see: look again soon after a write, less often
            # while the file only stays open.
            backoff = RECHECK_S[0]
            if before is not None and not fresh:
                backoff = min(before.backoff * 2, RECHECK_S[1])
            since = before.since if before is not None and before.signature == sig else now
            self.seen[path] = _Seen(sig, since, now + backoff, backoff)
            return False
        # Polling, or the kernel cannot say: finished once it held still from one look on.
        quiet = POLL_S / 2 if self.poll else QUIET_S
        if before is not None and before.signature == sig and now - before.since >= quiet:
            return True
        since = before.since if before is not None and before.signature == sig else now
        again = math.inf if self.poll else since + quiet  # polling: the next poll looks
        self.seen[path] = _Seen(sig, since, again, RECHECK_S[0])
        return False


def files_in(folder: Path) -> list[Path]:
    """Every regular file under ``folder`` with a finished name, hidden folders skipped."""
    found: list[Path] = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(p for n in sorted(names) if finished_name(p := Path(root) / n))
    return found


async def watch_folder(folder: Path, on_finished: OnFinished, *, mode: str = "auto") -> None:
    """Call ``on_finished(paths)`` with files that were finished in ``folder``, until cancelled.

    Files already there when it starts count as new.  Each file is handed over once; it is
    handed over again only after it changed (the card then keeps it as a duplicate if its
    bytes are the same).
    """
    folder.mkdir(parents=True, exist_ok=True)
    folder = folder.resolve()  # as watchfiles names what it reports: one name per file
    chosen, why = choose_mode(folder, mode)
    send, receive = trio.open_memory_channel[_News](math.inf)
    send.send_nowait(EVERYTHING)  # what is there already
    judge = _Judge(poll=chosen == "poll")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_import_finished, folder, judge, receive, on_finished)
        if chosen == "notify":
            try:
                await _notifications(folder, send, why, nursery)
                return
            except (OSError, RuntimeError) as exc:
                if mode != "auto":
                    raise
                why = f"notifications could not be set up ({exc})"
                log.warning("cannot watch %s by notifications: %s", folder, exc)
                judge.poll = True
        await _polls(folder, send, why)


async def _notifications(
    folder: Path, send: trio.MemorySendChannel[_News], why: str, nursery: trio.Nursery
) -> None:
    """Send what watchfiles reports; OSError or RuntimeError if it cannot watch ``folder``."""
    from watchfiles import Change, awatch

    # watchfiles waits in a thread that trio cannot interrupt: this event, set the moment
    # we are cancelled, ends that wait within a step instead of at its timeout.
    stop = trio.Event()  # read by that thread: is_set() only reads a flag

    async def stop_when_cancelled() -> None:
        try:
            await trio.sleep_forever()
        finally:
            stop.set()

    nursery.start_soon(stop_when_cancelled)
    while True:
        changes = awatch(folder, watch_filter=None, debounce=DEBOUNCE_MS, step=STEP_MS,
                         stop_event=stop, rust_timeout=int(RESCAN_S * 1000),
                         yield_on_timeout=True, force_polling=False, recursive=True)
        log.info("watching %s for new pictures (notifications: %s)", folder, why,
                 extra={"event": "Watching", "fields": {"mode": "notify", "folder": str(folder)}})
        async with contextlib.aclosing(changes):
            async for batch in changes:
                if not batch:  # watchfiles' timeout: a full look, in case an event went missing
                    if not folder.is_dir():
                        break
                    send.send_nowait(EVERYTHING)
                    continue
                gone = tuple(Path(name) for change, name in batch if change == Change.deleted)
                named = tuple(Path(name) for change, name in batch
                              if change != Change.deleted and finished_name(Path(name), folder))
                send.send_nowait(_News(named, gone))
                if folder in gone:
                    break
        # The folder went (a card reader's card unmounted, a folder removed): the kernel's
        # watch went with it.  Watch again once there is a folder by that name again.
        why = f"{folder} was removed and is back"
        log.warning("%s is gone; waiting for it to come back", folder)
        while not folder.is_dir():
            await trio.sleep(POLL_S)
        send.send_nowait(EVERYTHING)


async def _polls(folder: Path, send: trio.MemorySendChannel[_News], why: str) -> None:
    log.info("watching %s for new pictures (polling every %g s: %s)", folder, POLL_S, why,
             extra={"event": "Watching", "fields": {"mode": "poll", "folder": str(folder)}})
    while True:
        await trio.sleep(POLL_S)
        send.send_nowait(EVERYTHING)


async def _import_finished(
    folder: Path,
    judge: _Judge,
    receive: trio.MemoryReceiveChannel[_News],
    on_finished: OnFinished,
) -> None:
    """Judge the files the watcher names, look again at files still being written when
    their time comes, and hand the finished ones over.  The judge is touched only here."""
    while True:
        news: list[_News] = []
        with trio.move_on_at(judge.next_look()):
            news.append(await receive.receive())
        while True:  # and whatever else is waiting already
            try:
                news.append(receive.receive_nowait())
            except trio.WouldBlock:
                break
        for item in news:
            for path in item.gone:
                judge.forget(path)
        named = [path for item in news for path in item.named]
        everything = any(item.everything for item in news)
        finished = await trio.to_thread.run_sync(
            functools.partial(_look, folder, judge, named, everything, trio.current_time()))
        if finished:
            # bench/field.py --burst times a file's close to this line, then to its capture.
            log.info("%d file(s) finished in %s", len(finished), folder, extra={
                "event": "Finished", "fields": {"paths": [str(p) for p in finished]}})
            await on_finished(finished)


def _look(folder: Path, judge: _Judge, named: list[Path], everything: bool,
          now: float) -> list[Path]:
    paths = [*named, *(files_in(folder) if everything else ()), *judge.due(now)]
    return judge.judge(paths, now, named=frozenset(named))
