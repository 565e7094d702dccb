"""Every error cammesh defines is a CammeshError (STYLE.md rule 4; issue 15, mesh/).

A caller that catches ``CammeshError`` catches every error we raise on purpose, and an error
outside the root is one it did not know to catch.  The packages are imported and walked, so
an exception class is found however it is spelled (``class X(ValueError)``, an alias, ...).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
import warnings
from pathlib import Path

from protocol.errors import CammeshError

PACKAGES = ("protocol", "storage", "mesh", "sim")

# Outside the root on purpose, each with its reason.  Private control flow only: an exception
# that never leaves the module that raises it is not an error a caller sees.
ALLOWED: dict[str, str] = {}  # module.Class -> why a private control-flow exception may stay outside


def exceptions_outside_the_root(packages: tuple[str, ...]) -> list[str]:
    """``module.Class`` of every exception class defined in the packages and not a CammeshError."""
    found = []
    for package in packages:
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, f"{package}."):
            if info.name.endswith(".__main__"):
                continue  # runs a command when imported
            with warnings.catch_warnings():
                # pyftpdlib, which mesh/ftp_server.py imports, still imports asyncore.
                warnings.simplefilter("ignore", DeprecationWarning)
                module = importlib.import_module(info.name)
            for name, obj in sorted(vars(module).items()):
                if (
                    inspect.isclass(obj)
                    and issubclass(obj, BaseException)
                    and obj.__module__ == module.__name__
                    and obj.__name__ == name  # not an alias
                    and not issubclass(obj, CammeshError)
                ):
                    found.append(f"{module.__name__}.{name}")
    return found


def test_every_error_is_under_cammesh_error() -> None:
    outside = [name for name in exceptions_outside_the_root(PACKAGES) if name not in ALLOWED]
    assert not outside, (
        f"exceptions outside protocol.errors.CammeshError: {outside}; derive them from their "
        "package's error (protocol.errors, storage.errors, mesh.errors), or, for private control "
        "flow, name them in ALLOWED with the reason"
    )


def test_the_walk_finds_a_planted_stray(tmp_path: Path) -> None:
    package = tmp_path / "planted_errors"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "bad.py").write_text(
        "from protocol.errors import CammeshError\n"
        "class Stray(ValueError): pass\n"
        "class Rooted(CammeshError): pass\n"
        "Alias = Stray  # defined once: found once, under its own name\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        assert exceptions_outside_the_root(("planted_errors",)) == ["planted_errors.bad.Stray"]
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith("planted_errors")]:
            del sys.modules[name]
