"""The ingest step: the landing folder into the warehouse, every row loaded or quarantined."""

from __future__ import annotations

from typing import Any

from lienwatch import warehouse
from lienwatch.ingest import ingest
from lienwatch.night import Night


def run(night: Night) -> dict[str, Any]:
    """Landing folder into the warehouse; every row loaded or quarantined."""
    con = warehouse.connect(night.db)
    try:
        summary = ingest(
            con,
            night.data,
            run_id=night.run_id,
            as_of=night.as_of,
            results_dir=night.night_dir / "validation",
        )
    finally:
        con.close()
    return {
        **summary.totals(),
        "validation_results": [f.validation_result for f in summary.files if f.validation_result],
    }
