"""Suite-wide fixtures: no test may leak a thread; Hypothesis profiles by environment."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

# A derandomised, bounded profile for CI and everyday runs; a long one by choice:
#   CAMMESH_PROFILE=long pytest
settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "long",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile("dev", max_examples=30, deadline=None, print_blob=True)
# Mutation runs (bench/mutation.py sets CAMMESH_PROFILE=mutation): derandomised and few
# examples, so a mutant's verdict is the same on every run and a survivor costs seconds.
# Tests that name their own max_examples are capped to it too (see pytest_collection_modifyitems).
MUTATION_EXAMPLES = 8
# A mutant that makes a loop endless (``t.offset = length``) must cost a test's time-out, not
# mutmut's (15 times the summed duration of every test reaching the function: nine minutes for
# the scheduler's ``_step``).  The slowest fast test takes 5 s; "thread" ends the whole process,
# since Hypothesis would catch the "signal" method's exception and shrink on, unwatched.
MUTATION_TEST_TIMEOUT = 30
settings.register_profile(
    "mutation",
    derandomize=True,
    database=None,
    max_examples=MUTATION_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)
settings.load_profile(os.environ.get("CAMMESH_PROFILE", "ci"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under the mutation profile, cap every test's own max_examples to the profile's, and
    its time to MUTATION_TEST_TIMEOUT (a hang is a mutant found, and found quickly)."""
    if os.environ.get("CAMMESH_PROFILE") != "mutation":
        return
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(MUTATION_TEST_TIMEOUT, method="thread"))
        test = getattr(getattr(item, "obj", None), "__func__", getattr(item, "obj", None))
        own = getattr(test, "_hypothesis_internal_use_settings", None)
        if own is not None and own.max_examples > MUTATION_EXAMPLES:
            test._hypothesis_internal_use_settings = settings(  # type: ignore[union-attr]
                own, max_examples=MUTATION_EXAMPLES
            )
        machine = getattr(item, "cls", None)
        own = getattr(machine, "settings", None)
        if isinstance(own, settings) and own.max_examples > MUTATION_EXAMPLES:
            machine.settings = settings(own, max_examples=MUTATION_EXAMPLES)  # type: ignore[union-attr]


def long_profile() -> bool:
    """True when the long profile was chosen (more kills, more examples, more inputs)."""
    return os.environ.get("CAMMESH_PROFILE") == "long"


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail any test that leaves a thread running (trio's worker cache threads excepted)."""
    before = {t.ident for t in threading.enumerate()}
    yield
    deadline = time.monotonic() + 5.0
    while True:
        leaked = [
            t
            for t in threading.enumerate()
            if t.ident not in before and t.is_alive() and not t.name.startswith("Trio thread")
        ]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not leaked, f"test leaked threads: {[t.name for t in leaked]}"
