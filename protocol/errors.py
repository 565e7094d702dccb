"""Errors of the whole project are rooted here; protocol errors split by whose fault they are.

Modelled on h11: a ``LocalProtocolError`` means *we* tried something the
protocol forbids (a bug or a misuse of the API); a ``RemoteProtocolError``
means the peer sent something hostile or broken, and the connection must close.
"""

from __future__ import annotations


class CammeshError(Exception):
    """Root of every error cammesh raises on purpose."""


class ProtocolError(CammeshError):
    """Something broke the wire protocol; ``code`` is a short machine-readable reason."""

    def __init__(self, message: str, *, code: str = "protocol") -> None:
        super().__init__(message)
        self.code = code


class LocalProtocolError(ProtocolError):
    """We tried to send or do something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something malformed, oversized, unexpected or false; close the connection."""
