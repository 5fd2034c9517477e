"""Benchmark: the early-warning flags step alone at scale.

    uv run python benchmarks/bench_flags.py --loans 1000000 --months 24 [--baseline FILE]

Generates (once, shared with ``bench_night.py`` under ``--work``) a landing folder,
and builds (once, reused on later runs) a warehouse that has run the first night on
the day before the folder's last ledger day: ingest and delinquency, the flags step
not yet. Then it times :func:`lienwatch.steps.flags.run` alone, each run in a fresh
process (its seconds, and the process's peak memory: the interpreter and imports
included, as in a night), ``--repeat`` times; the figure is the fastest run. Target at
1,000,000 loans: under 5 s.

Building the 1M-loan warehouse takes about ten minutes (generate, initial ingest, the
month-end history); ``--rebuild`` forces it.

With ``--model`` it first times ``lienwatch train`` on the warehouse's 24 month ends
(its seconds and peak memory, in a fresh process; targets at 1,000,000 loans: under
5 min and 4 GB) and then the flags step scoring with that model (every second lien
below 90 days). Without it the warehouse's model, if any, is set aside.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import parser, peak_rss_mb, report


def case_key(loans: int, months: int, profile: str) -> str:
    """What names a warehouse and its output folder (the stressed ones keep their old names)."""
    return f"{loans}-{months}" + ("" if profile == "stressed" else f"-{profile}")


def warehouse_paths(work: Path, key: str) -> tuple[Path, Path]:
    """The reusable warehouse and the marker written once it is complete."""
    db = work / f"flags-{key}.duckdb"
    return db, db.with_name(db.name + ".ready")


def build(data: Path, db: Path, out: Path, as_of: date) -> dict[str, Any]:
    """Ingest the folder and run the night's delinquency step (no flags) into ``db``."""
    from lienwatch.night import Night
    from lienwatch.settings import Settings
    from lienwatch.steps import delinquency, ingest

    night = Night(data=data, db=db, out=out, as_of=as_of, run_id=f"bench-{as_of}")
    figures: dict[str, Any] = {}
    for name, step in (
        ("ingest", lambda: ingest.run(night)),
        ("delinquency", lambda: delinquency.run(night, Settings())),
    ):
        started = time.perf_counter()
        step()
        figures[f"{name}_seconds"] = round(time.perf_counter() - started, 1)
    figures["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return figures


def flags_once(data: Path, db: Path, out: Path, as_of: date) -> dict[str, Any]:
    """One flags step as the night runs it: its modules already imported (a night's
    process imports the flow module, and with it every step's, before its first step)."""
    import flows.nightly  # noqa: F401
    import transforms.flags  # noqa: F401
    from lienwatch.night import Night, long_lived_objects_set_aside
    from lienwatch.settings import Settings
    from lienwatch.steps import flags

    settings = Settings()
    night = Night(data=data, db=db, out=out, as_of=as_of, run_id=f"bench-{as_of}")
    with long_lived_objects_set_aside():  # as the night's flow does
        started, cpu = time.perf_counter(), time.process_time()
        counts = flags.run(night, settings)
    seconds = round(time.perf_counter() - started, 3)
    return {
        "seconds": seconds,
        "cpu_seconds": round(time.process_time() - cpu, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "flagged": counts["flagged"],
        "in_queue": counts["in_queue"],
    }


def train_once(data: Path, db: Path, out: Path, as_of: date) -> dict[str, Any]:
    """``lienwatch train`` on the warehouse's month ends."""
    from lienwatch.settings import Settings
    from lienwatch.train import train

    started, cpu = time.perf_counter(), time.process_time()
    row = train(Settings(), db, out / "models")
    metrics = json.loads(row["metrics"])
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "cpu_seconds": round(time.process_time() - cpu, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "version": row["version"],
        "train_rows": metrics["train_rows"],
        "auc": metrics["auc"],
        "auc_rules_score": metrics["auc_rules_score"],
    }


def set_model_aside(db: Path) -> None:
    """No model in use: the flags step runs the rules."""
    import duckdb

    with duckdb.connect(str(db)) as con:
        tables = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
        if "risk_models" in tables:
            con.execute("UPDATE risk_models SET in_use = false")


def out_folder(args: argparse.Namespace) -> Path:
    return args.work / f"out-flags-{case_key(args.loans, args.months, args.profile)}"


def run_case(
    case: str, args: argparse.Namespace, data: Path, db: Path, as_of: date
) -> dict[str, Any]:
    """Run one case in a fresh interpreter (so its peak memory is its own)."""
    command = [
        sys.executable,
        __file__,
        "--case",
        case,
        "--data",
        str(data),
        "--db",
        str(db),
        "--out",
        str(out_folder(args)),
        "--as-of",
        as_of.isoformat(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        raise SystemExit(f"case {case} failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--loans", type=int, default=1_000_000)
    p.add_argument("--months", type=int, default=24)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument(
        "--profile",
        choices=["stressed", "realistic"],
        default="stressed",
        help="the generator's profile (stressed: the one the saved figures were measured on)",
    )
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "lienwatch-bench")
    p.add_argument("--rebuild", action="store_true", help="build the warehouse again")
    p.add_argument("--model", action="store_true", help="train first, then score with the model")
    p.add_argument("--case", choices=["build", "flags", "train"], help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--as-of", type=date.fromisoformat, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.case:
        run = {"build": build, "flags": flags_once, "train": train_once}[args.case]
        print(json.dumps(run(args.data, args.db, args.out, args.as_of), default=str))
        return

    from benchmarks.nightly_folder import prepare

    args.work.mkdir(parents=True, exist_ok=True)
    folder = prepare(args.work, args.loans, args.months, profile=args.profile)
    as_of = folder.last_day - timedelta(days=1)
    db, ready = warehouse_paths(args.work, case_key(args.loans, args.months, args.profile))
    built: dict[str, Any] = {}
    if args.rebuild or not ready.exists() or ready.read_text().strip() != as_of.isoformat():
        print(
            f"building a warehouse of {args.loans:,} loans x {args.months} months "
            f"(night {as_of}) ...",
            flush=True,
        )
        ready.unlink(missing_ok=True)
        staging = db.with_name(db.name + ".building")
        staging.unlink(missing_ok=True)
        staging.with_name(staging.name + ".wal").unlink(missing_ok=True)
        shutil.rmtree(out_folder(args), ignore_errors=True)
        built = run_case("build", args, folder.data, staging, as_of)
        staging.replace(db)
        shutil.rmtree(
            staging.with_name(staging.name + ".tmp"), ignore_errors=True
        )  # DuckDB's spill folder
        ready.write_text(as_of.isoformat() + "\n")
        print(f"  built: {built}", flush=True)
    else:
        print(f"reusing {db} (night {as_of})", flush=True)

    trained: dict[str, Any] = {}
    if args.model:
        trained = run_case("train", args, folder.data, db, as_of)
        print(f"  train: {trained}", flush=True)
    else:
        set_model_aside(db)
    runs = []
    for i in range(args.repeat):
        figures = run_case("flags", args, folder.data, db, as_of)
        print(
            f"  run {i + 1}: {figures['seconds']} s ({figures['cpu_seconds']} s of CPU), "
            f"{figures['peak_rss_mb']} MiB",
            flush=True,
        )
        runs.append(figures)
    best = min(runs, key=lambda f: f["seconds"])
    case = {
        "seconds": best["seconds"],
        "peak_rss_mb": max(f["peak_rss_mb"] for f in runs),
        "runs_seconds": [f["seconds"] for f in runs],
        "runs_cpu_seconds": [f["cpu_seconds"] for f in runs],
        "loans": args.loans,
        "months": args.months,
        "profile": args.profile,
        "as_of_date": as_of.isoformat(),
        "flagged": best["flagged"],
        "in_queue": best["in_queue"],
    }
    suffix = f"{args.loans}" + ("" if args.profile == "stressed" else f"_{args.profile}")
    name = f"flags_model_{suffix}" if args.model else f"flags_{suffix}"
    cases = {name: case}
    if trained:
        cases[f"train_{suffix}"] = trained
    if built:
        cases[f"build_{suffix}"] = built
    report("flags" if args.profile == "stressed" else f"flags_{args.profile}", cases, args)


if __name__ == "__main__":
    main()
