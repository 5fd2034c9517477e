"""Fault injection for the reliability tests: fail, or kill the process, at a named point.

Set ``LIENWATCH_FAULT=<point>:<action>`` in the environment of a night (tests only;
nothing sets it in production). Points are ``<step>:start`` and ``<step>:end`` for each
step of the flow, and ``letters:file`` after the first letter file is written. Actions:
``fail`` raises an error (the flow records the night as failed), ``kill`` sends
SIGKILL to the process (nothing gets to clean up: the hardest case for a rerun).
"""

from __future__ import annotations

import os
import signal

VARIABLE = "LIENWATCH_FAULT"


class InjectedFault(RuntimeError):
    """The failure a test asked for."""


def fault_point(point: str) -> None:
    wanted = os.environ.get(VARIABLE, "")
    if not wanted:
        return
    where, _, action = wanted.rpartition(":")
    if where != point:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise InjectedFault(f"injected fault at {point}")
