"""The FTP process (mesh/ftp.py starts it): the server, and its pipe to the node.

To the node: ("listening", port) or ("error", why) first, then ("completed", Completed),
("room?",) and ("status", cameras); from it: ("room", free), ("imported", Completed, ok,
pending, free) and ("stop",).  No message from the node is waited for in the server's
loop: a "room?" is answered when the node can, into ``Room.heard``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path
from typing import Any

from mesh.errors import MeshError
from mesh.ftp_room import stop_hashing
from mesh.ftp_server import CameraServer, FtpSettings


def child_main(conn: Any, settings: FtpSettings, card: Path, cert: Path, key: Path,
               json_logs: bool) -> None:
    """The FTP process: serve until the node says stop or is gone (its pipe closes)."""
    _child_logging(json_logs)
    lock = threading.Lock()

    def send(message: tuple[Any, ...]) -> None:
        with lock, contextlib.suppress(OSError):  # the node is gone: its pipe ends us soon
            conn.send(message)

    try:
        server = CameraServer(settings, card, cert, key, ask_room=lambda: send(("room?",)),
                              deliver=lambda item: send(("completed", item)))
    except MeshError as exc:
        send(("error", str(exc)))
        return
    server.on_change = lambda: send(("status", server.status()))
    send(("listening", server.port))
    send(("status", server.status()))

    def listen() -> None:
        try:
            while True:
                message = conn.recv()
                if message[0] == "room":
                    server.room.heard(message[1])
                elif message[0] == "imported":
                    _, item, ok, pending, free = message
                    server.imported(item, ok=ok, pending=pending, free=free)
                    server.on_change()
                elif message[0] == "stop":
                    break
        except (EOFError, OSError):
            pass  # the node is gone
        server.stop()

    threading.Thread(target=listen, name="cammesh-ftp-node", daemon=True).start()
    try:
        server.serve()
    finally:
        stop_hashing()


def _child_logging(json_logs: bool) -> None:
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    handler = logging.StreamHandler()  # the node's stderr: the same log
    if json_logs:
        from mesh.json_logs import JsonLogFormatter

        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.handlers[:] = [handler]
