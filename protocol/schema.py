"""Each message type's wire schema, derived once from its dataclass fields (protocol/messages.py).

A schema maps one message type to and from its msgpack map: the msgspec Struct that
packs and checks it in C (the fast path, both ways), and for frames msgspec refuses,
which fields the exact, field-by-field path must convert.  protocol/codec.py frames
and unframes messages with these; nothing here touches bytes.
"""

from __future__ import annotations

import enum
import operator
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from protocol.fields import base_type
from protocol.messages import BY_TAG, MESSAGE_TYPES, PROTOCOL_VERSION, Message, field_types

TAG_KEY: Final = "t"
VERSION_KEY: Final = "v"

FromWire = Callable[[object], object]
SetSlot = Callable[[Message, object], None]


def _slot_setter(cls: type[Message], name: str) -> SetSlot:
    """The ``__set__`` of the slot holding field ``name``: it writes past the frozen ``__setattr__``."""
    slot = getattr(cls, name)  # read off the class, a slot is its member descriptor
    if not isinstance(slot, types.MemberDescriptorType):
        raise AssertionError(f"{cls.__name__}.{name} is not a slot; make the message slotted")
    setter: SetSlot = slot.__set__
    return setter


def _enum_from_wire(kind: type[enum.StrEnum]) -> FromWire:
    members = {member.value: member for member in kind}

    def convert(value: object) -> object:
        if isinstance(value, str) and value in members:
            return members[value]
        return value  # the message's own check names the field and the allowed values

    return convert


def _tuple_from_wire(value: object) -> object:
    # Only an array becomes a tuple; a string must not turn into a tuple of letters.  An
    # array inside it too (a Marked's keywords), as msgspec makes of it.
    if not isinstance(value, list):
        return value
    return tuple(tuple(v) if isinstance(v, list) else v for v in value)


@dataclass(frozen=True, slots=True)
class Schema:
    """How one message type maps to and from its msgpack map."""

    cls: type[Message]
    tag: str
    keys: frozenset[str]  # every key of the wire map, tag and version included
    # The fast path, both ways: a msgspec Struct of the same fields and limits, tagged
    # "t" and with the version as its first field.  msgspec packs it and checks it in C.
    wire: type[msgspec.Struct]
    values: Callable[[object], tuple[Any, ...]]  # every field's value, in order
    mapping_at: tuple[int, ...]  # which of them are mappings (msgspec packs only dicts)
    build: Callable[[msgspec.Struct], Message]  # the message holding a checked Struct's values
    relations: bool  # the message checks fields against each other (check_relations)
    # The exact path, for frames msgspec refuses: which fields need converting.
    as_sent: tuple[tuple[str, SetSlot], ...]
    converted: tuple[tuple[str, SetSlot, FromWire], ...]


def _builder(cls: type[Message], names: list[str]) -> Callable[[msgspec.Struct], Message]:
    """A function that makes a ``cls`` message of a Struct msgspec has checked.

    Its values go straight into the message's slots: __init__ and __post_init__ would
    only check them again (~5 µs for a thumbnail offer).  The function is written out
    field by field, as dataclasses writes __init__, which takes half the time of a loop
    over the fields (0.9 µs against 1.8 for a thumbnail offer).
    """
    scope: dict[str, Any] = {"new": object.__new__, "cls": cls}
    lines = ["def build(wire):", "    msg = new(cls)"]
    for at, name in enumerate(names):
        scope[f"set_{at}"] = _slot_setter(cls, name)
        lines.append(f"    set_{at}(msg, wire.{name})")
    lines.append("    return msg")
    exec("\n".join(lines), scope)  # names are the dataclass's own field names
    build: Callable[[msgspec.Struct], Message] = scope["build"]
    return build


def _values_getter(names: list[str]) -> Callable[[object], tuple[Any, ...]]:
    """A function from a message to the values of ``names`` (at least one), as a tuple."""
    getter = operator.attrgetter(*names)
    if len(names) > 1:
        many: Callable[[object], tuple[Any, ...]] = getter
        return many
    return lambda msg: (getter(msg),)


def _schema(cls: type[Message]) -> Schema:
    types_ = field_types(cls)
    names = list(types_)
    from_wire: dict[str, FromWire] = {}
    for name, hint in types_.items():
        base = base_type(hint)
        if isinstance(base, type) and issubclass(base, enum.StrEnum):
            from_wire[name] = _enum_from_wire(base)
        elif typing.get_origin(base) is tuple:
            from_wire[name] = _tuple_from_wire
    if {TAG_KEY, VERSION_KEY} & set(names):
        raise AssertionError(f"{cls.__name__} has a field named like the frame's own keys")
    wire = msgspec.defstruct(
        f"{cls.__name__}Frame",
        [(VERSION_KEY, typing.Literal[PROTOCOL_VERSION]), *types_.items()],
        tag=cls.TAG,
        tag_field=TAG_KEY,
        forbid_unknown_fields=True,
        frozen=True,
    )
    mappings = [
        at
        for at, hint in enumerate(types_.values())
        if typing.get_origin(base_type(hint)) in (Mapping, dict)
    ]
    return Schema(
        cls=cls,
        tag=cls.TAG,
        keys=frozenset([TAG_KEY, VERSION_KEY, *names]),
        wire=wire,
        values=_values_getter(names),
        mapping_at=tuple(mappings),
        build=_builder(cls, names),
        relations=cls.check_relations is not Message.check_relations,
        as_sent=tuple((n, _slot_setter(cls, n)) for n in names if n not in from_wire),
        converted=tuple((n, _slot_setter(cls, n), from_wire[n]) for n in names if n in from_wire),
    )


SCHEMAS: Final[Mapping[type[Message], Schema]] = {cls: _schema(cls) for cls in MESSAGE_TYPES}
SCHEMA_BY_TAG: Final[Mapping[str, Schema]] = {tag: SCHEMAS[cls] for tag, cls in BY_TAG.items()}
SCHEMA_BY_WIRE: Final[Mapping[type[msgspec.Struct], Schema]] = {s.wire: s for s in SCHEMAS.values()}
