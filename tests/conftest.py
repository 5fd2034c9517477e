"""Shared fixtures: one Prefect test harness for the session (flow tests only); under
pytest-xdist, the order in which the modules are handed to the workers."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On pytest-xdist's workers (``make test``: each module runs whole on one worker,
    handed out in collection order), the modules with slow end-to-end tests come first,
    so that the run does not end with one worker busy on a long module and the other
    idle."""
    if not hasattr(config, "workerinput"):
        return
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)  # stable: each module stays in order


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect backend for flow tests (no network, no telemetry)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session", autouse=True)
def _cheap_password_hashes():
    """Workbench passwords hashed with argon2id at its lowest costs: each sign-in of the
    suite's hundreds otherwise takes a fifth of a second on four threads (the hashing is
    the library's; the suite tests how the workbench uses it)."""
    from argon2 import PasswordHasher

    from lienwatch.workbench import auth

    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(auth, "_hasher", hasher)
        patch.setattr(auth, "_DUMMY", hasher.hash("not anyone's password"))
        yield


@pytest.fixture(autouse=True)
def _close_stores():
    """Each test's workbench stores are closed after it (they live in its tmp_path)."""
    yield
    from lienwatch.workbench.store import close_stores

    close_stores()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium for a module's browser tests (tests/browser.py)."""
    from tests.browser import started_browser

    yield from started_browser(tmp_path_factory)


@pytest.fixture
def page(browser):
    from tests.browser import opened_page

    yield from opened_page(browser)
