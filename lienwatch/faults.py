"""Fault injection for the reliability tests: fail, or kill the process, at a named point.

Set ``LIENWATCH_FAULT=<point>:<action>`` in the environment of a night (tests only;
nothing sets it in production). Points are ``<step>:start`` and ``<step>:end`` for each
step of the flow, ``letters:file`` after the first letter file is written, and
``warehouse:write`` each time a step opens the warehouse to write. Actions: ``fail``
raises an error (the flow records the night as failed), ``kill`` sends SIGKILL to the
process (nothing gets to clean up: the hardest case for a rerun), ``nospace`` makes
the disk full from that point on: that point and every later one (the warehouse
included, so the failure cannot be recorded) raise "No space left on device".
"""

from __future__ import annotations

import errno
import os
import signal

VARIABLE = "LIENWATCH_FAULT"


class InjectedFault(RuntimeError):
    """The failure a test asked for."""


_disk_full = False


def fault_point(point: str) -> None:
    global _disk_full
    wanted = os.environ.get(VARIABLE, "")
    if not wanted:
        return
    where, _, action = wanted.rpartition(":")
    if where == point and action == "nospace":
        _disk_full = True
    if _disk_full:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), point)
    if where != point:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise InjectedFault(f"injected fault at {point}")
