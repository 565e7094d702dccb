"""Human sizes: decimal and binary units, plain bytes, and clear refusals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import CammeshError
from storage.errors import BadSize
from storage.sizes import format_size, parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("32GB", 32 * 10**9),
        ("32gb", 32 * 10**9),
        ("512MiB", 512 * 2**20),
        ("1.5 GB", 1_500_000_000),
        ("1000000", 1_000_000),
        (" 7 KiB ", 7 * 1024),
        ("2TiB", 2 * 2**40),
        ("0.5KiB", 512),
        ("100B", 100),
        ("4G", 4 * 10**9),
    ],
)
def test_sizes_parse(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text", ["", "GB", "-3GB", "1.2.3", "5 parsecs", "12 G B", "0.3B", "1e9", "NaN"]
)
def test_non_sizes_are_refused_with_the_forms_that_work(text: str) -> None:
    with pytest.raises(BadSize) as caught:
        parse_size(text)
    assert text.strip() == "" or repr(text) in str(caught.value)
    assert isinstance(caught.value, CammeshError)


def test_a_bad_size_names_an_example_of_a_good_one() -> None:
    with pytest.raises(BadSize, match="32GB"):
        parse_size("lots")


@given(st.integers(min_value=0, max_value=10**15))
def test_plain_bytes_round_trip(size: int) -> None:
    assert parse_size(str(size)) == size


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 kB"),
        (12_345_678, "12.3 MB"),
        (32 * 10**9, "32.0 GB"),
    ],
)
def test_sizes_format(size: int, text: str) -> None:
    assert format_size(size) == text


@given(st.integers(min_value=1000, max_value=10**14))
def test_a_formatted_size_is_within_a_twentieth_of_the_size(size: int) -> None:
    assert abs(parse_size(format_size(size).replace(" ", "")) - size) <= size * 0.05
