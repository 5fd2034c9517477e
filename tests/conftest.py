"""Shared fixtures: one Prefect test harness for the session (flow tests only)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect backend for flow tests (no network, no telemetry)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(autouse=True)
def _close_stores():
    """Each test's workbench stores are closed after it (they live in its tmp_path)."""
    yield
    from lienwatch.workbench.store import close_stores

    close_stores()
