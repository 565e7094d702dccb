"""A movie's strip made in a child process: a decoder that hangs or crashes inside FFmpeg
must not take the import (or the node) along with it."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import msgpack

from storage.errors import MovieUnusable
from storage.movie_strip import DEADLINE_S, StripFrame, StripSettings, describe
from storage.movies import Movie, extract_movie

HARD_TIMEOUT_S: Final = DEADLINE_S + 10.0  # the child's own deadline first, then a kill


def extract_movie_isolated(
    path: Path, settings: StripSettings | None = None, *,
    hard_timeout_s: float = HARD_TIMEOUT_S, command: Sequence[str] | None = None,
) -> Movie:
    """``extract_movie`` in a child process, killed after ``hard_timeout_s``.

    The deadline and packet bound inside the walk cannot stop a single FFmpeg call that
    never returns, nor survive one that crashes; a child process can be killed, and its
    death is only a reason.  ``command`` replaces the child's command line (tests)."""
    argv = list(command) if command is not None else [
        sys.executable, "-m", "storage.movie_process", str(path),
        json.dumps(dataclasses.asdict(settings or StripSettings())),
    ]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")]))
    try:
        done = subprocess.run(argv, capture_output=True, timeout=hard_timeout_s, env=env,
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:  # run() killed the child
        raise MovieUnusable(
            f"the decoder did not finish within {hard_timeout_s:g} s and was stopped"
        ) from None
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        raise MovieUnusable(f"the decoder crashed on this file ({name})")
    try:
        reply = msgpack.unpackb(done.stdout)
    except (ValueError, msgpack.UnpackException):
        reply = None
    if not isinstance(reply, dict):
        raise MovieUnusable(f"the decoder process failed (exit {done.returncode})")
    if "unusable" in reply:
        raise MovieUnusable(str(reply["unusable"]))
    strip = tuple(StripFrame(*f) for f in reply.pop("strip"))
    return Movie(strip=strip, **reply)


def _child(argv: list[str]) -> int:
    """``python -m storage.movie_process PATH SETTINGS``: the movie as msgpack on stdout."""
    path, settings = Path(argv[0]), StripSettings(**json.loads(argv[1]))
    try:
        movie = extract_movie(path, settings)
    except MovieUnusable as exc:
        reply: dict[str, Any] = {"unusable": str(exc)}
    except Exception as exc:  # anything else is still only a reason
        reply = {"unusable": f"movie extraction failed: {describe(exc)}"}
    else:
        reply = dataclasses.asdict(movie)
        reply["strip"] = [[f.time, f.offset, f.kind, f.jpeg] for f in movie.strip]
    sys.stdout.buffer.write(msgpack.packb(reply))
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
