"""The realistic profile's headline figures on a landing folder, measured through a night.

    .venv/bin/python benchmarks/profile_figures.py [--data sample_data] [--as-of 2026-11-20]
    .venv/bin/python benchmarks/profile_figures.py --db var/lienwatch.duckdb --as-of 2026-11-20

Without ``--db`` it runs ``lienwatch run --data DATA --as-of AS_OF`` into a temporary
folder (the whole night, as a servicer would run it), then reads the warehouse; with
``--db`` it reads a warehouse a night has already filled (the demo's, for instance).
It prints each figure of docs/portfolio.md (measured by
:func:`lienwatch.synthetic.figures.measure`) with the count of loans it is over.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lienwatch import warehouse
from lienwatch.synthetic.figures import measure

ROOT = Path(__file__).resolve().parents[1]


def run_night(data: Path, as_of: date, work: Path) -> Path:
    """One night over ``data`` through the command; returns the warehouse."""
    db = work / "lienwatch.duckdb"
    lienwatch = Path(sys.executable).with_name("lienwatch")
    done = subprocess.run(
        [
            str(lienwatch) if lienwatch.exists() else "lienwatch",
            "run",
            "--data",
            str(data),
            "--db",
            str(db),
            "--out",
            str(work / "out"),
            "--as-of",
            as_of.isoformat(),
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"lienwatch run failed ({done.returncode}): {done.stderr.strip()}")
    return db


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ROOT / "sample_data", help="landing folder")
    p.add_argument("--db", type=Path, help="a warehouse a night has filled (skips the night)")
    p.add_argument("--as-of", type=date.fromisoformat, default=date(2026, 11, 20))
    args = p.parse_args()
    work = None
    db = args.db
    if db is None:
        work = Path(tempfile.mkdtemp(prefix="lienwatch-figures-"))
        db = run_night(args.data.resolve(), args.as_of, work)
    con = warehouse.connect(db, read_only=True)
    try:
        figures = measure(con, args.as_of)
    finally:
        con.close()
        if work is not None:
            shutil.rmtree(work)
    print(f"{'figure':66} {'value':>9}  over")
    for figure in figures.values():
        over = f"{figure.over:,}" if figure.over else ""
        print(f"{figure.label:66} {figure.text():>9}  {over}")


if __name__ == "__main__":
    main()
