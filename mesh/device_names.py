"""What a person reads for a device (issue 17): its name, and its short id only where two
devices share a name (``cam (K7QM-2XPA)``), or where no name is known at all.

Used by ``cammesh ls``, ``cammesh status`` and the desk page alike.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from mesh.errors import MeshError
from mesh.identity import short_id_of


def shown_names(names: Mapping[str, str]) -> dict[str, str]:
    """Device id -> the text to show: the name alone when it is the only device so called
    (compared without case), else the name with the short id."""
    counts = Counter(name.casefold() for name in names.values())
    return {
        device_id: name if counts[name.casefold()] == 1 else f"{name} ({short_id_of(device_id)})"
        for device_id, name in names.items()
    }


def shown(names: Mapping[str, str], device_id: str) -> str:
    """One device as ``shown_names`` gave it; a device nobody named, by its short id."""
    return names.get(device_id) or short_id_of(device_id)


def card_names(card: Path, *, me: str, my_name: str) -> dict[str, str]:
    """The shown names of a card's own device and the peers it pinned (no mesh: itself only)."""
    from mesh.membership import load_membership

    names = {me: my_name}
    try:
        members = load_membership(card)
    except MeshError:
        members = None
    for pin in getattr(members, "peers", ()):
        names.setdefault(pin.device_id, pin.name)
    return shown_names(names)
