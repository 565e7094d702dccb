"""Field checks read off a message's annotations, where each limit is declared once.

A field's type carries its limits as ``msgspec.Meta``: ``Annotated[int, Meta(ge=1)]``.
The codec hands the same types to msgspec, which checks frames off the wire in C;
``checker`` turns them into the checks a message runs when it is built in this process.
The two judge alike (tests/protocol/test_wire_checks.py) but for what a peer cannot
build here anyway: the wire takes an integer where a float is due, as that float.

Built here, a value must have the declared type itself (an enum member, not its string;
a tuple, not a list); bytes fields also take a bytearray or memoryview, so a chunk's
payload need not be copied before it is framed.
"""

from __future__ import annotations

import enum
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from msgspec import Meta

Check = Callable[[object], "str | None"]  # None if the value is good, else why it is not

_BYTES_LIKE = (bytes, bytearray, memoryview)


def limits(hint: Any) -> tuple[Any, Meta]:
    """``hint`` without its ``Annotated`` wrapping, and the limits it declared (maybe none)."""
    if typing.get_origin(hint) is not Annotated:
        return hint, Meta()
    base, *extras = typing.get_args(hint)
    return base, next((m for m in extras if isinstance(m, Meta)), Meta())


def base_type(hint: Any) -> Any:
    """``hint`` without its ``Annotated`` limits."""
    return limits(hint)[0]


def union_options(hint: Any) -> tuple[Any, ...]:
    """The types a union ``hint`` allows; empty if it is not a union."""
    base = base_type(hint)
    origin = typing.get_origin(base)
    return typing.get_args(base) if origin is typing.Union or origin is types.UnionType else ()


def checker(hint: Any) -> Check:
    """The check for a value of type ``hint`` (maybe ``Annotated`` with a ``Meta``)."""
    if options := union_options(hint):
        return _union(options)
    hint, meta = limits(hint)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        return _tuple_of(meta, checker(args[0]))
    if origin is Mapping or origin is dict:
        return _map_of(meta, checker(args[0]), checker(args[1]))
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _member(hint)
    if hint is str:
        return _text(meta)
    if hint is bytes:
        return _blob(meta)
    if hint is int or hint is float:
        return _number(hint, meta)
    if hint is bool:
        return lambda value: None if type(value) is bool else "must be a boolean"
    if hint is type(None):
        return lambda value: None if value is None else "must be nil"
    raise TypeError(f"no field check for {hint!r}")


def _text(meta: Meta) -> Check:
    lo, hi = meta.min_length or 0, meta.max_length
    pattern = re.compile(meta.pattern) if meta.pattern else None
    if pattern is not None:
        why = f"must be {meta.description or f'text matching {meta.pattern}'}"
    elif hi is None:
        why = "must be text"
    else:
        why = (
            f"must be text of {lo} to {hi} characters"
            if lo
            else f"must be text of at most {hi} characters"
        )

    def check(value: object) -> str | None:
        if not isinstance(value, str) or (pattern is not None and not pattern.search(value)):
            return why
        if len(value) < lo or (hi is not None and len(value) > hi):
            return why
        return None

    return check


def _blob(meta: Meta) -> Check:
    lo, hi = meta.min_length or 0, meta.max_length
    why = f"must be {lo} to {hi} bytes"

    def check(value: object) -> str | None:
        if type(value) is bytes:
            size = len(value)
        elif isinstance(value, memoryview):
            try:  # a released view has no size; a strided one cannot be framed as it is
                if not value.c_contiguous:
                    return why
                size = value.nbytes
            except ValueError:
                return why
        elif isinstance(value, _BYTES_LIKE):
            size = len(value)
        else:
            return why
        return None if lo <= size and (hi is None or size <= hi) else why

    return check


def _number(kind: type[int] | type[float], meta: Meta) -> Check:
    lo, hi = meta.ge, meta.le
    why = "must be a finite float" if kind is float else f"must be an integer in [{lo}, {hi}]"

    def check(value: object) -> str | None:
        # type() and not isinstance(): True is not an integer here, nor 1 a float.
        if type(value) is not kind:
            return why
        number = typing.cast(float, value)
        if (lo is not None and not number >= lo) or (hi is not None and not number <= hi):
            return why  # NaN fails both comparisons
        return None

    return check


def _member(kind: type[enum.Enum]) -> Check:
    why = f"must be one of {[m.value for m in kind]}"
    return lambda value: None if isinstance(value, kind) else why


def _union(options: tuple[Any, ...]) -> Check:
    """One of several kinds: the check is chosen by the value's own type."""
    # A generic option (a tuple of keywords) is found by its origin: the value's own type.
    by_type = {_kind(option): checker(option) for option in options}
    if bytes in by_type:  # built here, a bytes field may hold any bytes-like buffer
        by_type[bytearray] = by_type[memoryview] = by_type[bytes]
    names = " or ".join("nil" if t is type(None) else t.__name__ for t in map(_kind, options))
    why = f"must be {names}"

    def check(value: object) -> str | None:
        found = by_type.get(type(value))
        if found is None:  # a subclass (a str subclass, say) or a type not allowed
            kinds = [t for t in by_type if t is not bool and isinstance(value, t)]
            if not kinds or isinstance(value, bool):
                return why
            found = by_type[kinds[0]]
        return found(value)

    return check


def _kind(option: Any) -> Any:
    base = base_type(option)
    return typing.get_origin(base) or base


def _tuple_of(meta: Meta, item_check: Check) -> Check:
    """A tuple of at most ``meta.max_length`` items."""
    limit = meta.max_length
    why = f"must be a tuple of at most {limit} items"

    def check(value: object) -> str | None:
        if not isinstance(value, tuple) or (limit is not None and len(value) > limit):
            return why
        for at, item in enumerate(value):
            if (bad := item_check(item)) is not None:
                return f"item {at} {bad}"
        return None

    return check


def _map_of(meta: Meta, key_check: Check, value_check: Check) -> Check:
    """A map of at most ``meta.max_length`` entries."""
    limit = meta.max_length
    why = f"must be a map of at most {limit} entries"

    def check(value: object) -> str | None:
        if not isinstance(value, Mapping) or (limit is not None and len(value) > limit):
            return why
        for key, item in value.items():
            if (bad := key_check(key)) is not None:
                return f"key {key!r} {bad}"
            if (bad := value_check(item)) is not None:
                return f"value of {key!r} {bad}"
        return None

    return check
