"""``--policy`` on the command line (issue 17): the words, the old one, and each command's default."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh.cli import build_parser
from mesh.desk_demo import DeviceSpec, make_mesh
from mesh.errors import MeshError
from mesh.node_commands import build_runtime, parse_policies
from protocol.config import Policy
from protocol.messages import Role
from storage.card import Card

A = "a" * 64
B = "b" * 64


def test_the_two_words_and_a_peer_prefix() -> None:
    assert parse_policies(["*=requested", "bbb=all"], [A, B]) == ("requested", {B: "all"})
    assert parse_policies([], [A, B]) == ("all", {})
    assert parse_policies([], [A, B], default="requested") == ("requested", {})


def test_the_old_word_thumbnails_means_requested_with_a_warning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert parse_policies(["*=thumbnails", "aa=thumbnails"], [A, B]) == ("requested", {A: "requested"})
    err = capsys.readouterr().err
    assert err.count("warning:") == 2
    assert "'thumbnails' is the old word for 'requested'" in err
    assert "write *=requested" in err


@pytest.mark.parametrize("item", ["*=everything", "all", "*=", "zz=all"])
def test_an_unclear_policy_is_refused(item: str) -> None:
    with pytest.raises(MeshError, match="--policy"):
        parse_policies([item], [A, B])


def policy_of(tmp_path: Path, command: str, *extra: str) -> tuple[Policy, dict[str, Policy]]:
    desk, _camera = make_mesh(tmp_path / "mesh", [DeviceSpec("desk", Role.DESK),
                                                 DeviceSpec("cam", Role.CAMERA)])
    args = build_parser(command).parse_args([command, str(desk), *extra])
    with Card.open(desk) as card:
        runtime = build_runtime(args, card)
        return runtime.config.default_policy, dict(runtime.config.policies)


def test_cammesh_desk_pulls_thumbnails_and_requested_originals_by_default(tmp_path: Path) -> None:
    assert policy_of(tmp_path, "desk") == (Policy.REQUESTED, {})


def test_cammesh_desk_mirrors_everything_with_policy_all(tmp_path: Path) -> None:
    assert policy_of(tmp_path, "desk", "--policy", "*=all") == (Policy.ALL, {})


def test_cammesh_node_keeps_mirroring_by_default(tmp_path: Path) -> None:
    assert policy_of(tmp_path, "node") == (Policy.ALL, {})


def help_of(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        build_parser(command).parse_args([command, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_the_help_says_what_each_word_does_and_the_desks_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    desk_help = help_of("desk", capsys)
    assert "--policy '*=all' mirrors every original" in desk_help
    assert "(default: requested)" in desk_help
    node_help = help_of("node", capsys)
    assert "(default: all)" in node_help
    assert "'requested' pulls only the originals" in node_help
