"""No module over 500 lines in protocol/, storage/, mesh/ or sim/ (issue 15): a module a
reader can hold in one sitting.  Splitting is the fix, never a longer limit."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("protocol", "storage", "mesh", "sim")
LIMIT = 500


def too_long(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, int]:
    """Module path -> its line count, for every module over the limit."""
    counts = {
        str(path.relative_to(root)): len(path.read_text().splitlines())
        for package in packages
        for path in sorted((root / package).rglob("*.py"))
    }
    return {path: n for path, n in counts.items() if n > LIMIT}


def test_no_module_is_over_the_limit() -> None:
    assert (ROOT / "protocol" / "node.py").exists()  # it looks where the modules are
    long = too_long(ROOT)
    assert not long, f"over {LIMIT} lines: {long}"


@pytest.mark.parametrize("lines", [LIMIT + 1, 2 * LIMIT])
def test_the_check_finds_a_planted_long_module(tmp_path: Path, lines: int) -> None:
    (tmp_path / "protocol").mkdir()
    (tmp_path / "protocol" / "long.py").write_text("x = 1\n" * lines)
    (tmp_path / "protocol" / "short.py").write_text("x = 1\n" * LIMIT)
    assert too_long(tmp_path, ("protocol",)) == {"protocol/long.py": lines}
