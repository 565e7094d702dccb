"""A node's settings: who it is, how it pulls originals, when it disperses, its timers."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from protocol.errors import LocalProtocolError
from protocol.messages import Limits, Role, check_text
from protocol.sealing import Sealer

# The names of the bugs the simulator's suite plants to prove it catches them
# (tests/sim/test_planted_bugs.py).  Each is a subclass in sim/planted.py handed to the Node
# as one of its ``Parts``: no switch for one is left in protocol/.
PLANTED_BUGS = frozenset(
    {"free-before-stored", "chunk-before-thumbnail", "accept-past-capacity", "stale-readout"}
)


class Policy(enum.StrEnum):
    """What the receiver pulls from a peer: the policy is always the receiver's.

    Thumbnails and metadata always travel, ahead of originals, under either word; the
    policy says only which originals follow (FIG. 10: "requested only" or every one).
    """

    REQUESTED = "requested"  # only the originals (or smaller copies) our user asks for
    ALL = "all"  # every original, in the background, while the card is below high water
    # The old word: it meant what "requested" means (thumbnails travel under both), so it
    # is an alias of it; mesh/ warns where a user still writes it (OLD_POLICY_WORDS).
    THUMBNAILS = "requested"

    @classmethod
    def _missing_(cls, value: object) -> Policy | None:
        return OLD_POLICY_WORDS.get(value) if isinstance(value, str) else None


OLD_POLICY_WORDS: Mapping[str, Policy] = {"thumbnails": Policy.REQUESTED}


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Keyword options with defaults."""

    name: str
    role: Role
    chunk_size: int = Limits.DEFAULT_CHUNK
    high_water: float = 0.9  # fraction of the card's capacity
    replicas: int = 1
    default_policy: Policy = Policy.ALL
    policies: Mapping[str, Policy] = field(default_factory=dict)
    keepalive_s: float = 10.0
    peer_timeout_s: float = 30.0
    max_outstanding_requests: int = 4  # background pulls in flight per peer
    max_share_per_peer: float = 0.5  # of our capacity one peer may hold or reserve here
    max_peer_backlog: int = 4096  # answers queued for a peer that keeps asking without reading
    retry_s: float = 30.0  # how long a rejected holder is skipped for a picture
    readout_retry_s: float = 5.0  # how often a waiting read-out is tried again
    # The editor's marks travel (protocol/marks.py, the "marks" capability in our Hello).
    # Off unless asked for, so that every conversation and simulator trace pinned before
    # marks travelled stays as it was; the real node (mesh/) and the marks scenarios ask.
    share_marks: bool = False
    # Wraps picture keys for the desks the runtime names (Node.connected) and unwraps
    # those sent to us; None: no key ever travels with a thumbnail (issue 7, FIG. 20).
    sealer: Sealer | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        check_text("NodeConfig", "name", self.name, Limits.MAX_NAME)
        if not Limits.MIN_CHUNK <= self.chunk_size <= Limits.MAX_CHUNK:
            raise LocalProtocolError(
                f"chunk_size must be in [{Limits.MIN_CHUNK}, {Limits.MAX_CHUNK}]", code="config"
            )
        if not 0.0 < self.high_water <= 1.0:
            raise LocalProtocolError("high_water must be a fraction in (0, 1]", code="config")
        if self.replicas < 1:
            raise LocalProtocolError("replicas must be at least 1", code="config")
        if self.keepalive_s <= 0 or self.peer_timeout_s <= self.keepalive_s:
            raise LocalProtocolError(
                "keepalive_s must be positive and below peer_timeout_s", code="config"
            )
        if self.readout_retry_s <= 0:
            raise LocalProtocolError("readout_retry_s must be positive", code="config")
        if not 0.0 < self.max_share_per_peer <= 1.0:
            raise LocalProtocolError("max_share_per_peer must be a fraction in (0, 1]", code="config")
        if self.max_peer_backlog < 16:
            raise LocalProtocolError("max_peer_backlog must be at least 16", code="config")
        if self.max_outstanding_requests < 1:
            raise LocalProtocolError("max_outstanding_requests must be at least 1", code="config")

    def policy_for(self, peer_id: str) -> Policy:
        return self.policies.get(peer_id, self.default_policy)
