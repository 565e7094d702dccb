"""The ``--deliver`` and ``--export-to`` options of ``cammesh desk``: the editor's selects
sent onward as they are made, and exported from the page's button."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from mesh.errors import MeshError

if TYPE_CHECKING:
    from mesh.deliver import Deliverer
    from mesh.desk_export import DeskExport
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


def add_export_options(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("export", "the page's Export button: like `cammesh export`")
    group.add_argument("--export-to", type=Path, metavar="DIR",
                       help="where the page's Export button writes the selects (originals "
                       "with XMP sidecars; an existing file is never replaced)")
    group.add_argument("--export-rename", metavar="TEMPLATE",
                       help="name the exported files by a template (see `cammesh export --help`)")


def export_for(args: argparse.Namespace, runtime: Runtime) -> DeskExport | None:
    """The page's export, or None without ``--export-to``."""
    if args.export_to is None:
        if args.export_rename is not None:
            raise MeshError("--export-rename goes with --export-to DIR")
        return None
    from mesh.desk_export import DeskExport
    from storage.export import check_template

    if args.export_rename is not None:
        check_template(args.export_rename)
    return DeskExport(runtime, args.export_to.resolve(), template=args.export_rename)
