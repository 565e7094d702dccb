"""Picture keys in the simulator (issue 7, FIG. 20): real cryptography, the same bytes every run.

With ``Scenario.wrap_keys`` each device gets a ``storage.sealing.Sealing`` whose exchange
key and one-time wrap keys come from the seed, and a camera wraps each picture's key for
every desk it connects to, as the runtime does for a desk pinned as one.
"""

from __future__ import annotations

import hashlib
import random
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric import x25519

from protocol.messages import Role
from storage.sealing import Sealing

if TYPE_CHECKING:
    from sim.devices import Device


def sealer_for(seed: int, index: int) -> Sealing:
    """Device ``index``'s sealer: its X25519 key and its wraps' one-time keys seeded."""
    private = x25519.X25519PrivateKey.from_private_bytes(
        hashlib.sha256(f"cammesh-sim key:{seed}:{index}".encode()).digest()
    )
    rng = random.Random(f"wraps:{seed}:{index}")
    return Sealing(
        private, ephemeral=lambda: x25519.X25519PrivateKey.from_private_bytes(rng.randbytes(32))
    )


def recipient(dev: Device, peer: Device) -> bytes | None:
    """The key ``dev`` wraps its pictures' keys for when it connects to ``peer`` (a desk)."""
    sealer, theirs = dev.config.sealer, peer.config.sealer
    if peer.role is not Role.DESK or not isinstance(sealer, Sealing) or not isinstance(theirs, Sealing):
        return None
    return theirs.public_key
