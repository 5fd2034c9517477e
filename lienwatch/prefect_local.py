"""Prefect's local mode, with its temporary server started before the night needs it.

With no Prefect API configured, Prefect starts a temporary server the first time a flow
runs: it imports the server's code (seconds of CPU) in the night's process, then starts
the server in a subprocess that imports it again and waits for it, all before the
night's first step. :func:`local_server` starts the same server (the same command and
environment Prefect uses for its temporary server: no UI, no background services) at
once, so that it boots on another core while the night imports its own code, and
points the flow at it; the night's process never imports the server's code. With an
API configured (a Prefect server, or the test harness), it does nothing.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from lienwatch.errors import LienwatchError

STARTUP_TIMEOUT_SECONDS = 120  # a loaded 2-core machine has taken 30 s
PORT_IN_USE = 3  # uvicorn's exit code when the port is taken


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _command(port: int) -> list[str]:
    import prefect

    return [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(prefect.__file__).parents[1]),
            "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "error", "--lifespan", "on"]


def _environment() -> dict[str, str]:
    from prefect.settings import get_current_settings

    return {**os.environ, **get_current_settings().to_environment_variables(exclude_unset=True),
            "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


_server: tuple[subprocess.Popen, str] | None = None  # this process's server and its API address


@contextmanager
def local_server() -> Iterator[Callable[[], None] | None]:
    """Within the block, flows report to a temporary server (when no Prefect API is
    configured): started on the first entry, kept for the process's later nights (a
    backfill), stopped when the process exits. The block gets a function to call just
    before its flow runs: it waits until the server answers; None when an API is
    configured (nothing to wait for)."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_EPHEMERAL_ENABLED,
        PREFECT_UI_URL,
        temporary_settings,
    )

    global _server
    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        yield None
        return
    if _server is None or _server[0].poll() is not None:
        port = _free_port()
        process = subprocess.Popen(_command(port), env=_environment())
        atexit.register(_stop, process)
        _server = (process, f"http://127.0.0.1:{port}/api")
    process, url = _server
    # No UI is served: no "View at" link in the run's log.
    with temporary_settings(updates={PREFECT_API_URL: url, PREFECT_UI_URL: ""}):
        yield lambda: _wait_for(process, url)


def _wait_for(process: subprocess.Popen, url: str) -> None:
    """Block until the server answers."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not _healthy(url):
        code = process.poll()
        if code is not None:
            raise LienwatchError(f"Prefect's temporary server exited at start (exit {code})"
                                 + ("; its port was taken" if code == PORT_IN_USE else ""))
        if time.monotonic() > deadline:
            raise LienwatchError(f"Prefect's temporary server did not answer within {STARTUP_TIMEOUT_SECONDS} s")
        time.sleep(0.1)
