"""The ``--deliver`` options of ``cammesh desk``: send the editor's selects onward as they are made."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from mesh.errors import MeshError

if TYPE_CHECKING:
    from mesh.deliver import Deliverer
    from mesh.runtime import Runtime


def add_delivery_options(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group(
        "delivery onward", "send each picture to an agency's server as soon as it is tagged "
        "(or rated highly enough): queued once in CARD/delivery.sqlite, so nothing goes twice "
        "across restarts; retried with backoff when the link drops; a cut-off upload resumes")
    group.add_argument("--deliver", metavar="URL",
                       help="ftp://USER@HOST[:PORT]/PATH, ftps://... (explicit AUTH TLS) or "
                       "sftp://... (needs the sftp extra: pip install 'cammesh[sftp]')")
    group.add_argument("--deliver-credentials", type=Path, metavar="FILE",
                       help="a TOML file only you may read (chmod 600): password = \"...\", and "
                       "optionally user, ca_file (FTPS), known_hosts and client_key (SFTP); "
                       "never put a password on the command line")
    group.add_argument("--deliver-rating", type=int, choices=range(0, 6), metavar="N",
                       help="also deliver pictures rated N stars or more (default: tagged only)")
    group.add_argument("--deliver-long-edge", type=int, metavar="PX",
                       help="send a JPEG copy this many pixels on its long edge, with the "
                       "caption in its XMP (default: the original, with an .xmp sidecar)")
    group.add_argument("--deliver-quality", type=int, default=85, metavar="Q",
                       help="JPEG quality of the copies, 1-100 (default 85)")
    group.add_argument("--deliver-rate", metavar="SIZE",
                       help="upload at most SIZE per second (e.g. 2MB), to leave a thin uplink "
                       "to the cameras' own traffic (default: as fast as it goes)")


def check_delivery_options(args: argparse.Namespace) -> None:
    """MeshError for flags that do not go together, before anything starts."""
    if args.deliver is None:
        extra = [f for f in ("deliver_credentials", "deliver_rating", "deliver_long_edge",
                             "deliver_rate")
                 if getattr(args, f) is not None]
        if extra:
            raise MeshError(f"--{extra[0].replace('_', '-')} goes with --deliver URL")
        return
    if args.deliver_long_edge is not None and not 16 <= args.deliver_long_edge <= 20000:
        raise MeshError("--deliver-long-edge is a number of pixels from 16 to 20000")
    if not 1 <= args.deliver_quality <= 100:
        raise MeshError("--deliver-quality is from 1 to 100")
    if args.deliver_rate:
        from storage.sizes import parse_size

        if parse_size(args.deliver_rate) <= 0:
            raise MeshError("--deliver-rate needs a size per second above 0, e.g. 2MB")
    from mesh.deliver_servers import parse_target

    target = parse_target(args.deliver, args.deliver_credentials)
    if target.scheme == "sftp":
        try:
            import asyncssh  # noqa: F401
        except ImportError as exc:
            raise MeshError("sftp:// delivery needs asyncssh: pip install 'cammesh[sftp]'") from exc


def deliverer_for(args: argparse.Namespace, runtime: Runtime) -> Deliverer | None:
    """The deliverer the flags ask for, or None without ``--deliver``."""
    if args.deliver is None:
        return None
    from mesh.deliver import Copy, Deliverer, Rule
    from mesh.deliver_servers import parse_target
    from storage.sizes import parse_size

    target = parse_target(args.deliver, args.deliver_credentials)
    rate = parse_size(args.deliver_rate) if args.deliver_rate else None
    return Deliverer(runtime, target, rule=Rule(rating=args.deliver_rating),
                     copy=Copy(long_edge=args.deliver_long_edge, quality=args.deliver_quality),
                     rate_limit=rate)
