"""Frames on the simulated links: pulled from a sender, carried, delivered, watched.

A node is polled only for peers its ``sending_peers()`` names, and a lane pulls one
frame when it is free; the frame holds the lane for ``len / bandwidth`` and lands
``latency`` later (sim/links.py).  On delivery the bytes go into the trace hash and
past the wire tap (thumbnail before original, counters), and are fed to the receiver,
sometimes cut in pieces so that its decoder must cope with any slicing.  A lying peer
(sim/lying.py) bends or slips in frames here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgpack

from protocol.codec import PREFIX, TAG_KEY, decode_frame
from protocol.errors import RemoteProtocolError
from protocol.messages import BY_TAG, Chunk, DisperseAccept, OriginalHeader, ThumbnailOffer
from sim import invariants
from sim.agenda import DELIVER, LANE_FREE, LIE

if TYPE_CHECKING:
    from sim.devices import Device
    from sim.links import NetworkLink
    from sim.lying import Lie
    from sim.world import World

_WIRE_COUNTER = {tag: f"wire.{tag}" for tag in BY_TAG}
_THUMB, _HEADER, _CHUNK = ThumbnailOffer.TAG, OriginalHeader.TAG, Chunk.TAG


def _unpack(body: memoryview) -> Any:
    return msgpack.unpackb(body, raw=False)


class Wire:
    """The frames of one world; ``in_flight`` counts those pulled and not yet delivered."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.in_flight = 0
        self.refused = False  # the last delivery ended in a RemoteProtocolError

    # --- out of the sender -------------------------------------------------------------

    def pump(self, dev: Device) -> None:
        """Pull frames out of ``dev`` for every idle lane to a peer it may have work for.

        ``sending_peers`` may be optimistic, never pessimistic, and a poll that finds
        nothing changes nothing, so skipping the other lanes changes no trace.  Lanes
        are taken in the order of the peers' indexes, as a full sweep would.
        """
        node = dev.node
        if node is None:
            return
        peers = node.sending_peers()
        if not peers:
            return
        world = self.world
        index_of = world.index_of
        conns = world.conn_from[dev.index]
        if len(peers) == 1:
            others = [index_of[peers[0]]]
        else:
            others = [index_of[p] for p in peers]
            others.sort()
        pump_lane = self.pump_lane
        for other in others:
            conn = conns[other]
            if conn is not None and conn.up:
                pump_lane(dev, conn)

    def pump_lane(self, dev: Device, conn: NetworkLink) -> None:
        """Pull one frame for this lane if it is free; if it is busy, wake it when it frees.

        A LANE_FREE event is scheduled only when the sender may have more for this
        peer, or gets more while the lane is busy: a lane that falls idle costs no event.
        """
        node = dev.node
        if node is None:
            return
        src = dev.index
        lane = conn.lanes[src]
        if lane.free_pending:
            return  # its LANE_FREE event pulls the next frame (in the order it was scheduled)
        dst = conn.b if src == conn.a else conn.a
        world = self.world
        t = world.t
        push = world.agenda.push
        if lane.busy_until > t:
            lane.free_pending = True
            push(lane.busy_until, LANE_FREE, src, dst, conn.epoch)
            return
        peer_id = world.devices[dst].device_id
        try:
            frame = node.next_frame(peer_id, dev.clock(t))
            if frame is None:
                return
            more = node.may_send(peer_id)
        except Exception as exc:
            world.fail("node-raised", f"{dev.name}.next_frame: {type(exc).__name__}: {exc}")
            return
        if b"\xa6accept" in frame[:16]:
            # Checked as it leaves: the holder's card must have room for what it promises.
            accept = decode_frame(memoryview(frame)[PREFIX:])
            if isinstance(accept, DisperseAccept):
                invariants.check_accept(world, dev, accept)
        done = t + len(frame) / lane.bandwidth
        if world.liar is not None:
            bent, lie = world.liar.on_pull(src, dst, frame)
            if lie is not None:
                # A lie takes the lane as the frame would have (left out: it never lands).
                lane.busy_until = done
                if more:
                    lane.free_pending = True
                    push(done, LANE_FREE, src, dst, conn.epoch)
                if bent is not None:
                    push(done + lane.latency, LIE, src, dst, (conn.epoch, bent, lie))
                    self.in_flight += 1
                return
        lane.busy_until = done
        if more:
            lane.free_pending = True
            push(done, LANE_FREE, src, dst, conn.epoch)
        push(done + lane.latency, DELIVER, src, dst, (conn.epoch, frame))
        self.in_flight += 1

    def on_lane_free(self, src: int, dst: int, epoch: int) -> None:
        world = self.world
        conn = world.conn_from[src][dst]
        if conn is None or conn.epoch != epoch or not conn.up:
            return
        conn.lanes[src].free_pending = False
        self.pump_lane(world.devices[src], conn)

    # --- into the receiver -------------------------------------------------------------

    def on_deliver(self, src: int, dst: int, payload: tuple[int, bytes]) -> None:
        epoch, frame = payload
        self.in_flight -= 1
        world = self.world
        conn = world.conn_from[src][dst]
        assert conn is not None
        if conn.epoch != epoch or not conn.up:
            world.metrics.count("frames.lost_in_break")
            return
        receiver = world.devices[dst]
        sender = world.devices[src]
        metrics = world.metrics
        size = len(frame)
        metrics.frames += 1
        metrics.bytes_moved += size
        t = world.t
        world.trace_delivery(t, src, dst, frame)
        self.observe(conn.lanes[src].thumbnails, receiver, sender, frame)
        node = receiver.node
        if world.violation is not None or node is None:
            return
        liar = world.liar
        if liar is not None and dst == liar.index:
            liar.heard(src, frame)
        now = receiver.clock(t)
        peer_id = sender.device_id
        # The decoder must cope with any slicing of the stream: cut some frames in two
        # or three pieces (fed one after the other, within this one event).
        rng = world.rng
        try:
            if size > 2 and rng.random() < 0.25:
                first, second = sorted((rng.randrange(1, size), rng.randrange(1, size)))
                node.receive_data(peer_id, frame[:first], now)
                if second != first:
                    node.receive_data(peer_id, frame[first:second], now)
                node.receive_data(peer_id, frame[second:], now)
            else:
                node.receive_data(peer_id, frame, now)
        except RemoteProtocolError as exc:
            self.refused = True
            if liar is None or not liar.excuses(src, dst, exc):
                world.fail("protocol-error", f"{receiver.name} refused {sender.name}'s frame: {exc}")
            world.after_call(receiver)
            world.break_link(src, dst, f"protocol error: {exc.code}")
            return
        except Exception as exc:
            world.fail("node-raised", f"{receiver.name}.receive_data: {type(exc).__name__}: {exc}")
            return
        world.after_call(receiver)

    def slip(self, src: int, dst: int, frame: bytes, lie: Lie) -> None:
        """A lying ``src`` slips ``frame`` in beside its node's frames (it lands after latency)."""
        world = self.world
        conn = world.conn_from[src][dst]
        if conn is None or not conn.up:
            return
        lane = conn.lanes[src]
        world.agenda.push(world.t + len(frame) / lane.bandwidth + lane.latency, LIE, src, dst,
                          (conn.epoch, frame, lie))
        self.in_flight += 1

    def on_lie(self, src: int, dst: int, payload: tuple[int, bytes, Lie]) -> None:
        """Deliver a lie, if it is still the lie it was; one the receiver must see through must
        end the link with a RemoteProtocolError (invariants.liar_cut_off)."""
        epoch, frame, lie = payload
        world = self.world
        if lie.valid is not None and not lie.valid():
            self.in_flight -= 1
            world.metrics.count("liar.too_late")
            return
        conn = world.conn_from[src][dst]
        live = conn is not None and conn.up and conn.epoch == epoch and world.devices[dst].node is not None
        must_cut = live and world.judge_cut_offs and lie.must_cut is not None and lie.must_cut()
        self.refused = False
        self.on_deliver(src, dst, (epoch, frame))
        if must_cut and world.violation is None:
            invariants.liar_cut_off(world, src, dst, lie, refused=self.refused)

    def observe(self, thumbnails: set[str], receiver: Device, sender: Device, frame: bytes) -> None:
        """The wire tap: thumbnail before original on every link, and counters (``wire.<tag>``).

        The world hands over whole frames, one per delivery, so the tap reads each
        frame's msgpack map as it is on the wire (tag, image id, offset) without the
        node's field checks: judging a frame's validity is the receiving node's job.
        """
        try:
            obj = _unpack(memoryview(frame)[PREFIX:])
            tag = obj[TAG_KEY]
            image_id = obj.get("image_id")
            offset = obj.get("offset")
        except Exception:  # not a cammesh frame: the receiver refuses it and the world reports that
            return
        if type(offset) is not int:
            offset = 0
        name = _WIRE_COUNTER.get(tag) if type(tag) is str else None
        if name is None:
            name = f"wire.{tag}"
        metrics = self.world.metrics
        counters = metrics.counters
        counters[name] = counters.get(name, 0) + 1
        if tag in (_THUMB, _HEADER, _CHUNK):
            if type(image_id) is not str:
                return  # malformed: the receiver refuses it
            if tag == _THUMB:
                thumbnails.add(image_id)
                # Counted, not judged: an offer of a thumbnail the receiver already holds.
                if receiver.store.image(image_id) is not None:
                    counters["wire.thumb.already_held"] = counters.get("wire.thumb.already_held", 0) + 1
                return
            if image_id not in thumbnails and receiver.store.image(image_id) is None:
                self.world.fail(
                    "thumbnail-before-original",
                    f"{sender.name}->{receiver.name} sent {tag} of {image_id[:12]} "
                    f"({obj.get('purpose')}) before its thumbnail",
                )
            if tag == OriginalHeader.TAG and offset > 0:
                metrics.count("resumes")
            return
        if offset:
            metrics.count("resumes")
