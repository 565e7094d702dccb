"""``--watch DIR``: files appearing in a folder (a tethered camera's or a card reader's DCIM) become captures.

Polling, not inotify: it works the same on every filesystem a card reader
mounts (FAT, exFAT, network shares).  A file is imported once its size and
modification time have stayed the same for one whole poll, so a picture the
camera is still writing is never imported half-written.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

log = logging.getLogger("cammesh.watch")

POLL_S = 0.5


def _scan(folder: Path) -> dict[Path, tuple[int, int]]:
    found: dict[Path, tuple[int, int]] = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if name.startswith("."):
                continue
            path = Path(root) / name
            try:
                st = path.stat()
            except OSError:
                continue  # vanished between listing and stat
            found[path] = (st.st_size, st.st_mtime_ns)
    return found


async def watch_folder(
    folder: Path, on_stable: Callable[[list[Path]], Awaitable[None]], *, poll_s: float = POLL_S
) -> None:
    """Call ``on_stable(paths)`` for files that appeared (or changed) and then held still."""
    folder.mkdir(parents=True, exist_ok=True)
    done: dict[Path, tuple[int, int]] = {}
    previous: dict[Path, tuple[int, int]] = {}
    log.info("watching %s for new pictures", folder)
    while True:
        current = await trio.to_thread.run_sync(_scan, folder)
        stable = sorted(
            path
            for path, sig in current.items()
            if previous.get(path) == sig and done.get(path) != sig and sig[0] > 0
        )
        if stable:
            await on_stable(stable)
            for path in stable:
                done[path] = current[path]
        previous = current
        await trio.sleep(poll_s)
