"""A night: where it reads and writes, its summary, and the writer lock it holds.

The steps of a night (:mod:`lienwatch.steps`) each take a :class:`Night`; the entry
points (:mod:`lienwatch.entry`) make one and run the flow over it.
"""

from __future__ import annotations

import fcntl
import gc
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from lienwatch.errors import WarehouseBusy


@dataclass(frozen=True)
class Night:
    """Where one night reads and writes, and for which business date."""

    data: Path
    db: Path
    out: Path
    as_of: date
    run_id: str

    @property
    def night_dir(self) -> Path:
        return self.out / self.as_of.isoformat()


@dataclass
class NightSummary:
    night: Night
    status: str = "completed"
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    reason: str | None = None  # why a night was skipped

    def as_dict(self) -> dict[str, Any]:
        n = self.night
        found: dict[str, Any] = {
            "as_of_date": n.as_of.isoformat(),
            "run_id": n.run_id,
            "status": self.status,
            "steps": self.steps,
            "warehouse": str(n.db),
            "outputs": str(n.night_dir),
        }
        if self.reason is not None:
            found["reason"] = self.reason
        return found

    def text(self) -> str:
        return summary_text(self.as_dict())


def summary_text(summary: dict[str, Any]) -> str:
    """The few lines a servicer reads after a night."""
    reason = f" ({summary['reason']})" if summary.get("reason") else ""
    lines = [f"night {summary['as_of_date']} ({summary['run_id']}): {summary['status']}{reason}"]
    for step, counts in summary["steps"].items():
        shown = ", ".join(f"{k} {v}" for k, v in counts.items() if not isinstance(v, dict | list))
        lines.append(f"  {step}: {shown}")
        for k, v in counts.items():
            if isinstance(v, dict) and v:
                lines.append(f"    {k}: " + ", ".join(f"{a} {b}" for a, b in v.items()))
    lines.append(f"  warehouse: {summary['warehouse']}")
    lines.append(f"  outputs:   {summary['outputs']}")
    return "\n".join(lines)


def new_run_id(as_of: date) -> str:
    return f"{as_of.isoformat()}-{uuid.uuid4().hex[:8]}"


_HELD: set[Path] = set()


@contextmanager
def writer_lock(db: Path) -> Iterator[None]:
    """Hold the warehouse's writer lock for a whole night; refuse at once if it is taken.

    Re-entrant within one process (the CLI takes it before starting the flow, so that a
    second night fails before any work; the flow takes it again when run by a
    scheduler).
    """
    key = db.resolve()
    if key in _HELD:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(db.with_name(db.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WarehouseBusy(
                f"{db}: another lienwatch night is running against this warehouse; "
                "nothing was changed"
            ) from None
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)
    finally:
        os.close(fd)


@contextmanager
def long_lived_objects_set_aside() -> Iterator[None]:
    """The objects alive when a night starts (the modules, Prefect's client: hundreds of
    thousands) set aside from the cycle collector while the night runs, and given back
    after it. The steps make few objects of their own but many short-lived ones, and each
    full collection would walk all of those and hold every thread of the night meanwhile.
    (No collection first: that would walk them all once more at the night's start; any
    garbage set aside with them is collected once they are given back.)"""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
