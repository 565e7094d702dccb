"""The check -> test table: every defence and refusal in protocol/, and the test that reaches it.

Keys are those of tests/protocol/check_sites.py (``<code>@<function>`` for a place that
builds a RemoteProtocolError, ``refuse:<callee>@<function>`` for a refusal sent to a
peer).  tests/protocol/test_check_table.py scans protocol/ and fails when a site is
missing here (a new check with no test), when a key here names no site any more, or when
a test named here does not exist.  Where the lying peer of the simulator (sim/lying.py)
also provokes a check, the property that does is named in ``sim``.

``note`` says why a site is reached only in a way of its own: *shadowed* (an earlier
check refuses the same lie first, and the test shows that one does), *unreachable*
(no input gets there while the other layers keep their contracts), or a *backstop*.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reached:
    test: str  # path::function, or path::function[param]
    note: str = ""
    sim: str = ""  # a simulator property with a lying peer that provokes it too


C = "tests/protocol/test_checks.py::test_each_check_refuses_its_lie"
R = "tests/protocol/test_refusals.py"
CODEC = "tests/protocol/test_codec.py"
CONN = "tests/protocol/test_connection.py"
S = "tests/protocol/test_machine_strips.py"
M = "tests/protocol/test_machine_marks.py"
LYING = "tests/sim/test_lying.py::test_a_liar_is_cut_off_for_every_lie_it_tells"

TABLE: dict[str, Reached] = {
    # --- codec: frames off the wire -------------------------------------------------------
    "frame-too-large@decode_frame": Reached(
        f"{CODEC}::test_decode_frame_rejects_a_body_over_the_limit"),
    "<passed-on>@decode_frame": Reached(
        "tests/protocol/test_checks.py::test_a_header_resuming_past_its_own_size_is_refused_by_the_codec"),
    "bad-msgpack@_refusal": Reached(f"{CODEC}::test_malformed_msgpack_raises_bad_msgpack"),
    "bad-field@_refusal": Reached(
        "tests/protocol/test_wire_checks.py::test_every_declared_edge_of_every_field_gets_one_verdict",
        note="backstop: only if msgspec and the field-by-field path ever disagree; the test "
        "holds them to one verdict on every declared edge",
    ),
    "bad-msgpack@_message": Reached(f"{CODEC}::test_bad_frames_raise_typed_remote_errors"),
    "unknown-type@_message": Reached(f"{CODEC}::test_bad_frames_raise_typed_remote_errors"),
    "bad-version@_message": Reached(f"{CODEC}::test_bad_frames_raise_typed_remote_errors"),
    "bad-field@_message": Reached(f"{CODEC}::test_bad_frames_raise_typed_remote_errors"),
    "<passed-on>@_message": Reached(f"{CODEC}::test_wrong_field_values_raise_bad_field"),
    "too-much-buffered@FrameDecoder.feed": Reached(
        "tests/protocol/test_checks.py::test_a_decoder_never_read_out_refuses_to_buffer_without_bound"),
    "frame-too-large@FrameDecoder._scan": Reached(
        f"{CODEC}::test_an_oversized_length_prefix_raises_at_feed_before_the_body_arrives"),
    "<passed-on>@FrameDecoder._raise_if_broken": Reached(
        f"{CODEC}::test_after_an_error_the_decoder_stays_broken"),
    # --- connection: the state table ---------------------------------------------------------
    "unexpected-message@Connection._accept": Reached(
        f"{CONN}::test_receiving_each_message_in_each_state", sim=LYING),
    "bad-version@Connection._check_hello": Reached(
        f"{CONN}::test_a_hello_from_the_wrong_device_or_version_kills_the_connection"),
    "wrong-peer@Connection._check_hello": Reached(
        f"{CONN}::test_a_hello_from_the_wrong_device_or_version_kills_the_connection"),
    "wrong-peer@Connection._check_hello#2": Reached(
        f"{CONN}::test_a_hello_from_the_wrong_device_or_version_kills_the_connection"),
    "<passed-on>@Connection._raise_if_dead": Reached(
        f"{CONN}::test_a_dead_connection_raises_on_every_call_but_may_send_one_error"),
    # --- the node -----------------------------------------------------------------------------
    "too-many-requests@Node.receive_data": Reached(f"{C}[too-many-requests@Node.receive_data]"),
    "unexpected@Node._handle": Reached(
        f"{CODEC}::test_bad_frames_raise_typed_remote_errors",
        note="unreachable: the codec yields only the message types _handle names (an unknown "
        "tag is refused there as unknown-type)",
    ),
    "identity@Sync.on_hello": Reached(
        "tests/protocol/test_checks.py::test_a_hello_naming_another_device_is_refused_by_the_connection_first",
        note="shadowed: the node gives its Connection the authenticated peer, whose wrong-peer "
        "check refuses such a Hello before the node sees it",
    ),
    "catalog@Sync.on_thumbnail": Reached(f"{C}[catalog@Sync.on_thumbnail]"),
    "catalog@Sync.on_thumbnail#2": Reached(f"{C}[catalog@Sync.on_thumbnail#2]"),
    # --- movies' strips (FIG. 15A) --------------------------------------------------------------
    # one parametrised test: [no-capability], [before-offer] and [a-still] in this order
    "unexpected@Strips.on_strip": Reached(f"{S}::test_a_strip_the_desk_cannot_take_is_refused"),
    "catalog@Strips.on_strip": Reached(f"{S}::test_a_strip_the_desk_cannot_take_is_refused"),
    "catalog@Strips.on_strip#2": Reached(f"{S}::test_a_strip_the_desk_cannot_take_is_refused"),
    "bad-offset@Strips.on_strip": Reached(
        f"{S}::test_a_strip_naming_an_offset_past_the_movie_s_end_is_refused"),
    # --- the editor's marks (issue 19) ----------------------------------------------------------
    "unexpected@SharedMarks._refuse_unless_shared": Reached(
        f"{M}::test_marks_to_a_device_that_named_no_marks_capability_are_refused"),
    "unexpected@SharedMarks.on_digest": Reached(f"{M}::test_a_second_marks_digest_on_one_link_is_refused"),
    "bad-marks@SharedMarks.on_marked": Reached(f"{M}::test_a_mark_stamped_far_in_the_future_is_refused"),
    "bad-marks@SharedMarks.on_marked#2": Reached(f"{M}::test_a_mark_the_card_cannot_keep_is_refused"),
    "too-many-marks@SharedMarks._count_unknown": Reached(
        f"{M}::test_marks_for_more_invented_pictures_than_the_card_keeps_are_refused"),
    "unexpected@Strips.on_want_strips": Reached(
        f"{S}::test_want_strips_to_a_device_that_named_no_want_strips_is_refused"),
    # --- incoming streams (transfers) -----------------------------------------------------------
    "unexpected-transfer@Inbound.on_header": Reached(f"{C}[unexpected-transfer@Inbound.on_header]", sim=LYING),
    "wrong-destination@Inbound.on_header": Reached(f"{C}[wrong-destination@Inbound.on_header]"),
    "bad-digest@Inbound.on_header": Reached(f"{C}[bad-digest@Inbound.on_header]"),
    "bad-size@Inbound.on_header": Reached(f"{C}[bad-size@Inbound.on_header]", sim=LYING),
    "bad-owner@Inbound.on_header": Reached(f"{C}[bad-owner@Inbound.on_header]"),
    "bad-offset@Inbound.on_header": Reached(f"{C}[bad-offset@Inbound.on_header]"),
    "unexpected-chunk@Inbound.on_chunk": Reached(f"{C}[unexpected-chunk@Inbound.on_chunk]", sim=LYING),
    "bad-offset@Inbound.on_chunk": Reached(f"{C}[bad-offset@Inbound.on_chunk]", sim=LYING),
    "unexpected-complete@Inbound.on_complete": Reached(f"{C}[unexpected-complete@Inbound.on_complete]", sim=LYING),
    "bad-complete@Inbound.on_complete": Reached(f"{C}[bad-complete@Inbound.on_complete]", sim=LYING),
    "hash-mismatch@Inbound.on_complete": Reached(f"{C}[hash-mismatch@Inbound.on_complete]", sim=LYING),
    "hash-mismatch@Inbound.on_complete#2": Reached(f"{C}[hash-mismatch@Inbound.on_complete#2]", sim=LYING),
    # --- serving and read-out -----------------------------------------------------------------
    "bad-offset@Serving.on_request": Reached(f"{C}[bad-offset@Serving.on_request]"),
    "bad-offset@Serving._serve": Reached(f"{C}[bad-offset@Serving._serve]"),
    "bad-offset@Collections.relay": Reached(f"{C}[bad-offset@Collections.relay]"),
    "bad-offset@Collections.relay#2": Reached(
        f"{C}[bad-accept@Dispersal.on_accept (offset)]",
        note="shadowed: a repair's relay starts at an accept's offset, and on_accept refuses "
        "an offset past the sealed size (bad-accept) before relaying",
    ),
    "hash-mismatch@Collections._open": Reached(f"{C}[hash-mismatch@Collections._open]"),
    # --- dispersal ------------------------------------------------------------------------------
    "bad-accept@Dispersal.on_accept": Reached(f"{C}[bad-accept@Dispersal.on_accept]", sim=LYING),
    "bad-digest@Dispersal.on_stored": Reached(f"{C}[bad-digest@Dispersal.on_stored]", sim=LYING),
    "premature-stored@Dispersal.on_stored": Reached(
        f"{C}[premature-stored@Dispersal.on_stored]", sim=LYING),
    "bad-owner@Holding.on_request": Reached(f"{C}[bad-owner@Holding.on_request]"),
    # --- refusals ---------------------------------------------------------------------------------
    "refuse:_reject@Holding._take_room": Reached(
        f"{R}::test_a_holder_above_its_mark_rejects_with_its_room"),
    "refuse:_reject@Holding._take_room#2": Reached(
        f"{R}::test_a_holder_rejects_a_peer_past_its_share_of_the_card"),
    "refuse:_reject@Holding._take_room#3": Reached(
        "tests/contract/test_store_contract.py::test_reserve_promises_room_and_unreserve_gives_it_back",
        note="backstop: Store.reserve refuses only what the high-water check above it let "
        "through, which a store keeping its contract never does",
    ),
    "refuse:DisperseReject@Holding._reject": Reached(
        f"{R}::test_a_holder_above_its_mark_rejects_with_its_room"),
    "refuse:TransferFailed@Serving.on_readout": Reached(
        f"{R}::test_a_read_out_of_a_picture_without_a_copy_here_is_refused"),
    "refuse:TransferFailed@Collections.relay": Reached(
        f"{R}::test_a_read_out_of_a_dispersed_original_whose_holder_is_away_is_refused_naming_it"),
    "refuse:TransferFailed@Serving.on_collect": Reached(
        f"{R}::test_a_collection_of_what_is_not_held_is_refused"),
    "refuse:TransferFailed@Collections._lost": Reached(
        f"{R}::test_readers_of_a_relay_hear_why_when_its_holder_goes"),
    "refuse:TransferFailed@Collections._lost#2": Reached(
        f"{R}::test_an_owner_reading_out_collects_then_serves_waiting_readers_or_tells_them"),
    "refuse:TransferFailed@Serving.on_request": Reached(
        f"{R}::test_a_request_for_a_picture_never_had_is_refused"),
    "refuse:TransferFailed@Serving.on_request#2": Reached(
        f"{R}::test_a_background_pull_of_a_dispersed_original_is_refused_not_collected"),
    "refuse:TransferFailed@Serving._serve_smaller": Reached(
        f"{R}::test_a_smaller_copy_that_cannot_be_made_is_refused_with_the_reason"),
    "refuse:TransferFailed@Serving.render": Reached(
        f"{R}::test_an_original_freed_while_queued_turns_into_a_refusal_not_stale_bytes"),
}
