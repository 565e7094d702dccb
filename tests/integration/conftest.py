"""Fixtures of the integration tests: whatever a test starts is stopped at its end, even when
the test fails half-way (a node left running would hold its card and ports for the next test)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.devices import ProcessMesh
from tests.integration.nodes import NodeProcess


@pytest.fixture
def nodes() -> Iterator[list[NodeProcess]]:
    """A list to append each started `cammesh node` process to; each is stopped afterwards."""
    started: list[NodeProcess] = []
    yield started
    for node in started:
        node.stop()


@pytest.fixture
def meshes() -> Iterator[list[ProcessMesh]]:
    """A list to append each made ``ProcessMesh`` to; every node of each is stopped afterwards."""
    made: list[ProcessMesh] = []
    yield made
    for mesh in made:
        mesh.stop_all()
