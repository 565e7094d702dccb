"""The counts behind `cammesh status` and the desk's header: one walk of the catalog."""

from __future__ import annotations

from collections.abc import Mapping

from protocol.peer import Link
from protocol.store import Store, Where


def status_counts(store: Store, links: Mapping[str, Link], waiting: tuple[int, int]) -> dict[str, int]:
    """Pictures by where they are, what we hold for others, the card's room, the links, and
    ``waiting`` (pulls, the user's requests); walks the catalog, so not for hot paths."""
    counts = {f"images_{w.value}": 0 for w in Where}
    for record in store.images():
        counts[f"images_{record.where.value}"] += 1
    held = list(store.held_originals())
    usage = store.usage()
    counts.update(
        held=len(held), held_bytes=sum(h.size for h in held),
        dispersion_entries=sum(1 for _ in store.dispersion_list()),
        peers=len(links), peers_ready=sum(1 for link in links.values() if link.ready),
        capacity=usage.capacity, used=usage.used, reserved=usage.reserved, free=usage.free,
        pulls_waiting=waiting[0], requests_waiting=waiting[1],
    )
    return counts
