"""Prefect's local mode, with its temporary server started before the night needs it.

With no Prefect API configured, Prefect starts a temporary server the first time a flow
runs: it imports the server's code (seconds of CPU) in the night's process, then starts
the server in a subprocess that imports it again and waits for it, all before the
night's first step. :func:`local_server` starts the same server (the same command and
environment Prefect uses for its temporary server: no UI, no background services) at
once, so that it boots on another core while the night imports its own code, and
points the flow at it; the night's process never imports the server's code. With an
API configured (a Prefect server, or the test harness), it does nothing.

Importing Prefect itself takes seconds too, so in a process that has not imported it
yet (``lienwatch run``), the server is started first, from the environment alone
(the server reads the same profile and settings files when it starts). Only when
Prefect's settings then turn out to configure an API (in a profile, say) is that
server stopped unused.
"""

from __future__ import annotations

import atexit
import importlib.util
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
    spec = importlib.util.find_spec("prefect")  # finds the package without importing it
    if spec is None or spec.origin is None:
        raise LienwatchError("Prefect is not installed in this environment")
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(Path(spec.origin).parents[1]),
        "--factory",
        "prefect.server.api.server:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "error",
        "--lifespan",
        "on",
    ]


SERVER_ENVIRONMENT = {
    "PREFECT_UI_ENABLED": "0",
    "PREFECT__SERVER_EPHEMERAL": "1",
    "PREFECT__SERVER_FINAL": "1",
}
# Unless PREFECT_SERVER_ANALYTICS_ENABLED is set: the night's server (and so Prefect in the
# night's process, which asks it) sends no usage statistics anywhere. A servicer's nightly
# job makes no outside calls it was not asked to make.
SERVER_DEFAULTS = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def _environment() -> dict[str, str]:
    """The server's environment: this process's, with the settings Prefect holds in this
    process when it is imported already (they may have been set in code)."""
    settings: dict[str, str] = {}
    if "prefect.settings" in sys.modules:
        from prefect.settings import get_current_settings

        settings = get_current_settings().to_environment_variables(exclude_unset=True)
    return {**SERVER_DEFAULTS, **os.environ, **settings, **SERVER_ENVIRONMENT}


def _start() -> tuple[subprocess.Popen, str]:
    port = _free_port()
    process = subprocess.Popen(_command(port), env=_environment())
    atexit.register(_stop, process)
    return process, f"http://127.0.0.1:{port}/api"


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
_unconfirmed = False  # _server was started from the environment alone (see start_early)


def start_early() -> None:
    """Start the temporary server now, from the environment alone, when this process has
    not imported Prefect and its environment names no API: the server then boots while the
    process imports the rest. :func:`local_server` reads Prefect's settings later and stops
    this server unused if they configure an API (in a profile, say)."""
    global _server, _unconfirmed
    if (
        _server is None
        and "prefect" not in sys.modules
        and not os.environ.get("PREFECT_API_URL")
        and (
            os.environ.get("PREFECT_SERVER_EPHEMERAL_ENABLED", "true").lower() not in ("0", "false")
        )
    ):
        _server, _unconfirmed = _start(), True


@contextmanager
def local_server() -> Iterator[Callable[[], None] | None]:
    """Within the block, flows report to a temporary server (when no Prefect API is
    configured): started on the first entry (or earlier, by :func:`start_early`), kept for
    the process's later nights (a backfill), stopped when the process exits. The block gets
    a function to call just before its flow runs: it waits until the server answers; None
    when an API is configured (nothing to wait for)."""
    global _server, _unconfirmed
    start_early()  # boots while Prefect is imported here

    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_EPHEMERAL_ENABLED,
        PREFECT_UI_URL,
        temporary_settings,
    )

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        if _server is not None and _unconfirmed:  # the settings configure an API after all
            _stop(_server[0])
            _server = None
        _unconfirmed = False
        yield None
        return
    _unconfirmed = False
    if _server is None or _server[0].poll() is not None:
        _server = _start()
    process, url = _server
    # No UI is served: no "View at" link in the run's log. Unless set, the flow sends no
    # heartbeats: they let a server with background services mark a crashed run, which
    # the temporary server (no services) never does, and a night ending waits up to a
    # second for the heartbeat thread to stop.
    with temporary_settings(
        updates={PREFECT_API_URL: url, PREFECT_UI_URL: ""},
        set_defaults={"flows.heartbeat_frequency": None},
    ):
        yield lambda: _wait_for(process, url)


def _wait_for(process: subprocess.Popen, url: str) -> None:
    """Block until the server answers."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not _healthy(url):
        code = process.poll()
        if code is not None:
            raise LienwatchError(
                f"Prefect's temporary server exited at start (exit {code})"
                + ("; its port was taken" if code == PORT_IN_USE else "")
            )
        if time.monotonic() > deadline:
            raise LienwatchError(
                f"Prefect's temporary server did not answer within {STARTUP_TIMEOUT_SECONDS} s"
            )
        time.sleep(0.1)
