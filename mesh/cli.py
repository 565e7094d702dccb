"""The ``cammesh`` command line: one function per subcommand, collected in one table.

To add a command, write ``add_<name>(subparsers)`` that registers its parser with
``set_defaults(run=...)``, list it in its module's ``COMMANDS`` (see ``mesh/card_commands.py``)
and name it under its module in ``COMMAND_MODULES``.  A command line naming one command
imports only that command's module (`cammesh node` starts in a fraction of a second, without
the demo, the simulator or the desk's web server); ``--help`` and unknown commands import all.
A command returns its exit code.  Any ``CammeshError`` becomes a one-line message on
stderr and exit code 2; argparse's own usage errors also exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from protocol.errors import CammeshError

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

BAD_INPUT = 2  # exit code for a bad card, size, id or path


# The modules whose ``COMMANDS`` lists make up the command line, in --help order, with the
# commands each registers (tests/mesh/test_startup.py holds the two in step).
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "mesh.card_commands": ("init", "import", "ls", "keep", "thumb"),
    "mesh.pairing_commands": ("mesh",),
    "mesh.node_commands": ("node", "status", "peers", "request", "refuse", "get", "collect",
                           "repair"),
    "mesh.desk_commands": ("desk",),
    "mesh.export_commands": ("export",),
    "mesh.ftp_commands": ("ftp",),
    "mesh.demo": ("demo",),
    "sim.cli": ("sim",),
}


def commands(command: str | None = None) -> list[Register]:
    """The register functions of ``command``'s module, or of every module when it names none.

    A module that fails to import is named on stderr.
    """
    found: list[Register] = []
    modules = [m for m, names in COMMAND_MODULES.items() if command in names]
    for name in modules or COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:  # one broken module must not take `init` or `ls` down with it
            print(f"cammesh: the commands of {name} are unavailable: {exc}", file=sys.stderr)
            continue
        found.extend(module.COMMANDS)
    return found


def command_named(argv: Sequence[str]) -> str | None:
    """The command a command line names: its first word that is not an option."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``command`` alone (when it is one), else of every command."""
    parser = argparse.ArgumentParser(
        prog="cammesh",
        description=(
            "A peer-to-peer camera mesh: thumbnails first, originals on demand, "
            "dispersal when a card fills. Each command works on a CARD, a folder."
        ),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens in detail")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for register in commands(command):
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one cammesh command; returns its exit code (never raises for bad input)."""
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(command_named(words))
    try:
        args = parser.parse_args(words)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed by argparse
        return exc.code if isinstance(exc.code, int) else BAD_INPUT
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR,
        format="%(levelname)s %(name)s: %(message)s",
    )
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except CammeshError as exc:
        print(f"cammesh: {exc}", file=sys.stderr)
        return BAD_INPUT
    except OSError as exc:  # a folder or file the user named cannot be read or written
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"cammesh: {exc.strerror or exc}{where}", file=sys.stderr)
        return BAD_INPUT
    except KeyboardInterrupt:
        print("cammesh: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
