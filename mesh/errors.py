"""Errors of the mesh runtime: pairing, pinned identities, the TLS transport, read-outs, the desk.

All are rooted in ``protocol.errors.CammeshError``; each message says what
happened and what the user can do about it.
"""

from __future__ import annotations

from protocol.errors import CammeshError


class MeshError(CammeshError):
    """Root of the errors raised by mesh/."""


class IdentityError(MeshError):
    """This device's key or certificate is missing, unreadable or inconsistent."""


class PairingError(MeshError):
    """Pairing failed; the message says whether the code, the peer or the network is to blame."""


class WrongCode(PairingError):
    """The pairing code typed on one side does not match the other side's."""


class PairingClosed(PairingError):
    """The pairing window closed (too many wrong codes, or it timed out)."""


class NotPaired(MeshError):
    """A TLS peer is not in our pins, or we are not in theirs: pair the devices first."""


class PeerIdentityMismatch(MeshError):
    """A peer presented a certificate other than the one we expected (pinned or announced)."""


class TransportError(MeshError):
    """A TLS connection could not be set up or broke; retry later."""


class ReadOutError(MeshError):
    """A read-out could not be completed; the message names why (e.g. the holder is offline)."""


class HttpError(MeshError):
    """A desk page request the desk refuses; ``status`` is the HTTP status it answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
