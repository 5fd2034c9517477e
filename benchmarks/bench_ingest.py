"""Ingest at scale: the initial load of a generated landing folder, then a steady night.

    uv run python benchmarks/bench_ingest.py --loans 1000000 --months 24 [--baseline FILE]

Each case runs in its own process so that its peak memory is its own. The initial
load takes the whole folder but its last day; the steady night adds that day's ledger
file (snapshots unchanged). Target: a steady night's ingest under 10 s at 1M loans.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import parser, peak_rss_mb, report


def _case(db: Path, data: Path) -> dict:
    from lienwatch.ingest import ingest
    from lienwatch.warehouse import connect

    con = connect(db)
    started = time.perf_counter()
    summary = ingest(con, data)
    seconds = time.perf_counter() - started
    con.close()
    totals = summary.totals()
    return {
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(peak_rss_mb()),
        "rows_loaded": totals["rows_loaded"],
        "rows_quarantined": totals["rows_quarantined"],
        "files_loaded": totals["files_loaded"],
    }


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--loans", type=int, default=1_000_000)
    p.add_argument("--months", type=int, default=24)
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "lienwatch-bench")
    p.add_argument("--case", nargs=2, metavar=("DB", "DATA"), help=argparse_hidden())
    args = p.parse_args()
    if args.case:
        print(json.dumps(_case(Path(args.case[0]), Path(args.case[1]))))
        return
    from benchmarks.nightly_folder import prepare

    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    folder = prepare(args.work, args.loans, args.months)
    print(f"landing folder ready in {time.perf_counter() - started:.0f} s: {folder.data}")
    db = args.work / f"ingest-{args.loans}.duckdb"
    db.unlink(missing_ok=True)
    cases = {"initial_load": _run(db, folder.data)}
    folder.release()
    cases["steady_night"] = _run(db, folder.data)
    for name in cases:
        cases[name]["loans"] = args.loans
    report("ingest", cases, args)


def _run(db: Path, data: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--case", str(db), str(data)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
