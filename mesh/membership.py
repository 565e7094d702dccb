"""Mesh membership (``CARD/mesh/peers.json``): the random mesh id and the pinned peers.

Each pinned peer is a device id, name, role and certificate; the device id is the SHA-256
of that certificate.  Only ``mesh_hash`` -- never the id -- appears in discovery.  A card
joins a mesh by pairing (mesh/pairing.py), and learns of members who joined later through
the pinned TLS hello (mesh/tls.py), in which each side lists the members it knows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mesh.errors import NotPaired, PairingError
from mesh.identity import Identity, device_id_of, identity_dir, short_id_of, write_atomically
from protocol.messages import Role

log = logging.getLogger("cammesh.pairing")

PEERS_FILE = "peers.json"
MAX_MEMBERS = 256


@dataclass(frozen=True, slots=True)
class PinnedPeer:
    """A paired device: its certificate is pinned; ``device_id`` is that certificate's SHA-256."""

    device_id: str
    name: str
    role: Role
    cert_pem: bytes = field(repr=False)

    @property
    def short_id(self) -> str:
        return short_id_of(self.device_id)

    @classmethod
    def from_cert(cls, cert: bytes, *, name: str, role: str) -> PinnedPeer:
        """Pin a certificate given as DER or PEM; raise ``PairingError`` if it is not one."""
        try:
            if cert.startswith(b"-----BEGIN"):
                parsed = x509.load_pem_x509_certificate(cert)
            else:
                parsed = x509.load_der_x509_certificate(cert)
            role_value = Role(role)
        except ValueError as exc:
            raise PairingError(f"a peer sent an unusable certificate or role: {exc}") from exc
        if not isinstance(name, str) or not 0 < len(name) <= 255:
            raise PairingError("a peer sent an unusable device name")
        der = parsed.public_bytes(serialization.Encoding.DER)
        pem = parsed.public_bytes(serialization.Encoding.PEM)
        return cls(device_id=device_id_of(der), name=name, role=role_value, cert_pem=pem)

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role.value, "cert": self.cert_pem}

    @classmethod
    def from_wire(cls, value: object) -> PinnedPeer:
        if not isinstance(value, dict) or not isinstance(value.get("cert"), bytes):
            raise PairingError("a peer sent a malformed member entry")
        return cls.from_cert(value["cert"], name=value.get("name"), role=value.get("role"))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Membership:
    """The mesh this card belongs to and the peers it has pinned."""

    mesh_id: str  # 32 lowercase hex characters, random; never advertised
    peers: tuple[PinnedPeer, ...] = ()

    @property
    def mesh_hash(self) -> str:
        """What discovery advertises: a hash of the mesh id, from which the id cannot be recovered."""
        return hashlib.sha256(b"cammesh mesh v1\0" + bytes.fromhex(self.mesh_id)).hexdigest()

    def pinned(self, device_id: str) -> PinnedPeer | None:
        return next((p for p in self.peers if p.device_id == device_id), None)

    def __contains__(self, device_id: object) -> bool:
        return any(p.device_id == device_id for p in self.peers)

    def with_peers(self, peers: Iterable[PinnedPeer], *, me: str) -> Membership:
        """These pins plus any new ``peers`` (never ``me``); existing pins are kept as they are."""
        known = {p.device_id for p in self.peers} | {me}
        added: list[PinnedPeer] = []
        for peer in peers:
            if peer.device_id not in known:
                known.add(peer.device_id)
                added.append(peer)
        if len(self.peers) + len(added) > MAX_MEMBERS:
            raise PairingError(f"a mesh holds at most {MAX_MEMBERS} devices")
        return Membership(self.mesh_id, self.peers + tuple(added)) if added else self

    def ca_bundle(self) -> str:
        """The pinned certificates as one PEM string, for an SSL context's trust store."""
        return "".join(p.cert_pem.decode("ascii") for p in self.peers)


def membership_path(card: Path) -> Path:
    return identity_dir(card) / PEERS_FILE


def load_membership(card: Path) -> Membership:
    """Read ``CARD/mesh/peers.json``; ``NotPaired`` when the card belongs to no mesh yet."""
    path = membership_path(card)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise NotPaired(
            f"{Path(card)} belongs to no mesh: run `cammesh mesh create` or `cammesh mesh join`"
        ) from exc
    except (ValueError, OSError) as exc:
        raise PairingError(f"{path} is unreadable ({exc}); pair this card again") from exc
    try:
        peers = tuple(
            PinnedPeer.from_cert(
                p["cert_pem"].encode("ascii"), name=p["name"], role=p["role"]
            )
            for p in raw["peers"]
        )
        membership = Membership(mesh_id=str(raw["mesh_id"]), peers=peers)
        bytes.fromhex(membership.mesh_id)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PairingError(f"{path} is malformed ({exc!r}); pair this card again") from exc
    for peer, entry in zip(peers, raw["peers"], strict=True):
        if entry.get("device_id") != peer.device_id:
            raise PairingError(f"{path}: a pinned device id does not match its certificate")
    return membership


def save_membership(card: Path, membership: Membership) -> None:
    """Write the membership atomically (temporary file, fsync, rename)."""
    doc = {
        "version": 1,
        "mesh_id": membership.mesh_id,
        "peers": [
            {
                "device_id": p.device_id,
                "name": p.name,
                "role": p.role.value,
                "cert_pem": p.cert_pem.decode("ascii"),
            }
            for p in membership.peers
        ],
    }
    path = membership_path(card)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps(doc, indent=1).encode("utf-8"), mode=0o644)


def create_mesh(card: Path) -> Membership:
    """Start a new mesh with a random id on this card; refuse if the card already belongs to one."""
    if membership_path(card).exists():
        raise PairingError(
            f"{Path(card)} already belongs to a mesh: run `cammesh mesh open` to admit more devices"
        )
    membership = Membership(mesh_id=secrets.token_hex(16))
    save_membership(card, membership)
    return membership


def learn_members(card: Path, identity: Identity, peers: Iterable[PinnedPeer]) -> Membership:
    """Add members a pinned peer vouched for (its TLS hello) to this card's pins."""
    current = load_membership(card)
    updated = current.with_peers(peers, me=identity.device_id)
    if updated is not current:
        save_membership(card, updated)
        for peer in updated.peers[len(current.peers) :]:
            log.info("learned mesh member %s (%s, %s)", peer.short_id, peer.name, peer.role)
    return updated
