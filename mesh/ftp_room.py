"""The card's room as the FTP process sees it, and an upload's file that takes room as it grows.

The FTP process never opens the card: the node tells it the card's free room.  A question
never stops the server's loop while a burst of uploads is under way: every upload asks
(``refresh``) and goes on with the last figure heard, which the node's answer soon
replaces; only a figure older than ``FRESH_S`` (the first upload after a quiet spell, when
the card may have changed for other reasons: a peer's dispersal, a deletion) is waited for.
The profile of bench/ftp_ingest.py showed the loop a quarter of an upload's time waiting
for the node's answer (which waits for the card's lock while an import commits).
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from mesh.errors import MeshError

REFRESH_BYTES = 8 * 1024 * 1024  # of one upload, between two questions on the card's room
GRANT = 1024 * 1024  # room an upload takes ahead of its writes (one TLS record is 16 KiB)
FRESH_S = 1.0  # a figure this old is waited for (up to ROOM_WAIT_S) before an upload starts
ROOM_WAIT_S = 5.0  # for the node's answer; the last figure stands after
HASH_BLOCK = 256 * 1024  # an upload's bytes go to the hashing thread this many at a time
HASH_BEHIND = 8  # blocks the hashing thread may be behind before a write waits for it


class OutOfRoom(MeshError):
    """The card cannot take what this upload has brought so far."""


class Room:
    """The card's free room, less what uploads under way (or waiting for their import) need.

    ``ask`` sends the node a question without waiting; its answer comes to ``heard`` (from
    another thread), and the node's word that it imported a file to ``imported``, with the
    room left after that import: the file's bytes leave ``pending`` as they join the card.
    """

    def __init__(self, ask: Callable[[], None], *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._answered = threading.Condition(self._lock)
        self._ask = ask
        self._clock = clock
        self.free = 0
        self.heard_at = -math.inf  # when the figure in ``free`` was heard
        self._asked_at = -math.inf  # when the last question went out
        self.pending = 0  # bytes of uploads received or under way, not yet on the card

    def refresh(self, *, max_age: float = FRESH_S) -> None:
        """Ask for the card's room; wait for the answer only if the figure is older than
        ``max_age`` (``math.inf``: never wait)."""
        with self._lock:
            now = self._clock()
            # One question out at a time (a burst of writes asks once), unless it went unheard.
            if self.heard_at >= self._asked_at or now - self._asked_at > ROOM_WAIT_S:
                self._asked_at = now
                self._ask()
            if now - self.heard_at <= max_age:
                return
            deadline = now + ROOM_WAIT_S
            while self.heard_at < self._asked_at and (left := deadline - self._clock()) > 0:
                self._answered.wait(left)
            # No answer in time: the node is busy or stopping; the last figure stands.

    def heard(self, free: int) -> None:
        """The node's answer: the card's free room now."""
        with self._lock:
            self.free = free
            self.heard_at = self._clock()
            self._answered.notify_all()

    def imported(self, size: int, free: int | None) -> None:
        """A file of ``size`` bytes left ``pending``: on the card (``free`` its room after),
        or given up (``free`` None)."""
        with self._lock:
            self.pending = max(0, self.pending - size)
            if free is not None:
                self.free = free
                self.heard_at = self._clock()

    def left(self) -> int:
        with self._lock:
            return self.free - self.pending

    def take(self, size: int, *, what: str) -> None:
        with self._lock:
            if self.pending + size > self.free:
                raise OutOfRoom(
                    f"the card has no room for {what}: "
                    f"{max(0, self.free - self.pending)} bytes free"
                )
            self.pending += size

    def give_back(self, size: int) -> None:
        with self._lock:
            self.pending = max(0, self.pending - size)


_hashing: ThreadPoolExecutor | None = None  # the FTP process's hashing thread, made when used
_hashing_made = threading.Lock()


def _hashing_thread() -> ThreadPoolExecutor:
    global _hashing
    with _hashing_made:
        if _hashing is None:
            _hashing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cammesh-ftp-hash")
        return _hashing


def stop_hashing() -> None:
    """End the hashing thread once what it was given is hashed (the process's end; tests)."""
    global _hashing
    with _hashing_made:
        hashing, _hashing = _hashing, None
    if hashing is not None:
        hashing.shutdown(wait=True)


class Digest:
    """The SHA-256 of an upload, hashed in a thread beside the FTP loop, in order.

    hashlib lets go of the GIL while it hashes a block, so the loop reads and writes the next
    TLS records meanwhile: hashed in the loop's own thread, the SHA-256 was a seventh of the
    FTP process's time (py-spy, bench/ftp_ingest.py), and the loop is what limits a burst."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._parts: list[bytes] = []
        self._size = 0
        self._behind: deque[Future[None]] = deque()

    def update(self, data: bytes) -> None:
        self._parts.append(data)
        self._size += len(data)
        if self._size >= HASH_BLOCK:
            self._hand_over()

    def hexdigest(self) -> str:
        if self._parts:
            self._hand_over()
        while self._behind:
            self._behind.popleft().result()
        return self._sha.hexdigest()

    def _hand_over(self) -> None:
        block = b"".join(self._parts)
        self._parts.clear()
        self._size = 0
        self._behind.append(_hashing_thread().submit(self._sha.update, block))
        while len(self._behind) > HASH_BEHIND:  # the thread is starved: wait, hold no more
            self._behind.popleft().result()


class GuardedFile:
    """An upload's file: each write first takes its room on the card (OutOfRoom if none).

    Room is taken ``GRANT`` bytes ahead (or just what a write needs, when a grant does not
    fit), not at each 16 KiB write: ``taken`` is what the upload holds, ``written`` what
    it wrote.  A file written from its first byte (``hashed``: a STOR, not a resume) is
    hashed as it arrives, so its import need not read it again to name it."""

    def __init__(self, file: Any, room: Room, what: str, *, hashed: bool = False) -> None:
        self._file = file
        self._room = room
        self._what = what
        self.taken = 0
        self.written = 0
        self._digest = Digest() if hashed else None

    def sha256(self) -> str | None:
        """The SHA-256 of what was written, when all of the file was written here."""
        return self._digest.hexdigest() if self._digest is not None else None

    def write(self, data: bytes) -> int:
        after = self.written + len(data)
        if after > self.taken:
            if self.written // REFRESH_BYTES != after // REFRESH_BYTES:
                self._room.refresh(max_age=math.inf)  # the room may change under a long upload
            try:
                self._room.take(after - self.taken + GRANT, what=self._what)
                self.taken = after + GRANT
            except OutOfRoom:
                self._room.take(after - self.taken, what=self._what)
                self.taken = after
        self.written = after
        if self._digest is not None:
            self._digest.update(data)
        return int(self._file.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)
