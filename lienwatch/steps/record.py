"""The night's record: its row in ``runs`` (running, then completed or failed) and its
``summary.json``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lienwatch import warehouse
from lienwatch.files import write_atomic
from lienwatch.night import Night, NightSummary


def start(night: Night) -> None:
    """Record the night as running. A run still marked running holds no lock (this
    process has it), so its process died: it is marked interrupted."""
    con = warehouse.connect(night.db)
    try:
        con.execute(
            "UPDATE runs SET status = 'interrupted', reason = 'the process stopped before the night "
            "finished' WHERE status = 'running'"
        )
        con.execute(
            "INSERT INTO runs (run_id, as_of_date, started_at, status) VALUES ($id, $d, $t, 'running')",
            {"id": night.run_id, "d": night.as_of, "t": _now()},
        )
    finally:
        con.close()


def end(night: Night, status: str, counts: dict[str, Any], reason: str | None = None) -> None:
    con = warehouse.connect(night.db)
    try:
        con.execute(
            """UPDATE runs SET finished_at = $t, status = $s, reason = $r, counts = $c
            WHERE run_id = $id""",
            {
                "t": _now(),
                "s": status,
                "r": reason,
                "c": json.dumps(counts, default=str),
                "id": night.run_id,
            },
        )
    finally:
        con.close()


def write_summary(night: Night, summary: NightSummary) -> Path:
    night.night_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = night.night_dir / "summary.json"
    payload = {
        "as_of_date": night.as_of.isoformat(),
        "run_id": night.run_id,
        "status": summary.status,
        "steps": summary.steps,
    }
    if summary.reason is not None:
        payload["reason"] = summary.reason
    write_atomic(path, json.dumps(payload, indent=2, default=str).encode("utf-8"))
    return path


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
