"""A whole night end to end at scale, per stage and in total.

    uv run python benchmarks/bench_night.py --loans 100000 --months 24 [--baseline FILE]
        [--history N] [--repeat R] [--steady-only]

Generates (once) a landing folder, runs the first night on the day before its last
ledger day (the initial load and history), then a steady night that adds the last
day's payment file. With ``--history N`` the first night stops N days before the last
day and a night runs for each day in between, so that the steady night meets a
warehouse holding N nights of status, flags, options and letters, as a servicer's does
after N nights (saved as ``night_<loans>_history_<N>``). The warehouse before the
steady night is kept beside the database; ``--steady-only`` starts from that copy and
times the steady night alone (saved with ``_steady`` added). ``--repeat R`` times the
steady night R times from the same warehouse and reports the run with the median flow
time (the faster of the middle two when R is even), with every run's flow and step seconds beside it: this 2-core host's speed varies
by up to half between runs minutes apart, in CPU seconds as much as in wall time.

Each night runs in its own process through the Prefect flow in local mode, started as
``lienwatch run`` starts it (Prefect's temporary server first, then the night's code);
``flow_seconds`` runs from the night's call (code loaded) to its summary,
``process_seconds`` is the whole process. The figures per stage are the flow's own
(seconds, CPU seconds of all the process's threads, and the process's peak memory
after the stage). Letters are decided but not rendered
(``letters.render = false``); PDF throughput is ``bench_letters.py``'s. Targets at
1,000,000 loans: a steady night under 30 s excluding PDF rendering, under 4 GB.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import parser, report

NIGHT = """
import atexit, gc, json, sys, time
from lienwatch import prefect_local
# As `lienwatch run` does: Prefect's temporary server boots while the night's code loads,
# and the exit collects no garbage through the modules loaded.
atexit.register(gc.freeze)
prefect_local.start_early()
from datetime import date
from pathlib import Path
from lienwatch.entry import run_night
from lienwatch.settings import Settings
started = time.perf_counter()
# Letters are decided but not rendered (a dry run): the target excludes PDF rendering,
# which benchmarks/bench_letters.py measures on its own.
summary = run_night(Settings.model_validate({"letters": {"render": False}}), data=Path(sys.argv[1]), db=Path(sys.argv[2]), out=Path(sys.argv[3]),
                    as_of=date.fromisoformat(sys.argv[4]))
summary["wall_seconds"] = round(time.perf_counter() - started, 2)
print("SUMMARY " + json.dumps(summary, default=str))
"""


def run(data: Path, db: Path, out: Path, as_of) -> dict:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", NIGHT, str(data), str(db), str(out), as_of.isoformat()],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        sys.exit(f"the night of {as_of} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    line = next(x for x in done.stdout.splitlines() if x.startswith("SUMMARY "))
    summary = json.loads(line.removeprefix("SUMMARY "))
    figures = {
        "process_seconds": round(time.perf_counter() - started, 2),
        "flow_seconds": summary["wall_seconds"],
    }
    steps = summary["steps"]
    for name, counts in steps.items():
        figures[f"{name}_seconds"] = counts["seconds"]
        figures[f"{name}_cpu_seconds"] = counts["cpu_seconds"]
        figures[f"{name}_peak_rss_mb"] = counts["peak_rss_mb"]
    figures["steps_seconds"] = round(sum(c["seconds"] for c in steps.values()), 2)
    figures["steps_cpu_seconds"] = round(sum(c["cpu_seconds"] for c in steps.values()), 2)
    figures["peak_rss_mb"] = max(c["peak_rss_mb"] for c in steps.values())
    for key in ("loans_active", "delinquent_30_plus"):
        figures[key] = steps["delinquency"][key]
    figures["flagged"] = steps["flags"]["flagged"]
    if "letters" in steps:
        figures["letters_decided"] = steps["letters"]["generated"] + steps["letters"]["suppressed"]
    if "options" in steps:
        figures["options_considered"] = steps["options"]["options_considered"]
    return figures


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--loans", type=int, default=100_000)
    p.add_argument("--months", type=int, default=24)
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "lienwatch-bench")
    p.add_argument(
        "--history",
        type=int,
        default=1,
        metavar="N",
        help="nights the warehouse holds before the steady night: the first night loads "
        "the ledger up to N days before the last day, then a night runs for each day "
        "in between (default 1: the first night only)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="R",
        help="time the steady night R times, each from the same warehouse; the figures "
        "are the run with the median flow time, with every run's flow seconds beside",
    )
    p.add_argument(
        "--steady-only",
        action="store_true",
        help="reuse the warehouse kept after an earlier run's history nights and time the steady night alone",
    )
    p.add_argument(
        "--profile",
        choices=["stressed", "realistic"],
        default="stressed",
        help="the generator's profile (stressed: the one the saved figures were measured on)",
    )
    p.add_argument(
        "--from-warehouse",
        type=Path,
        metavar="DB",
        help="start from a copy of a warehouse that has loaded the same folder up to the "
        "night before the steady one (bench_flags.py's, with its model): the first night "
        "runs again on the copy to complete its steps, instead of loading the history",
    )
    args = p.parse_args()
    from benchmarks.nightly_folder import prepare

    args.work.mkdir(parents=True, exist_ok=True)
    folder = prepare(args.work, args.loans, args.months, days=args.history, profile=args.profile)
    key = f"{args.loans}" + ("" if args.profile == "stressed" else f"-{args.profile}")
    db, out = args.work / f"night-{key}.duckdb", args.work / f"out-{key}"
    history = "first-night" if args.history == 1 else f"{args.history}-nights"
    kept = db.with_name(f"{db.stem}.after-{history}.duckdb")
    cases = {}
    bench = (
        f"night_{args.loans}"
        + ("" if args.profile == "stressed" else f"_{args.profile}")
        + ("" if args.history == 1 else f"_history_{args.history}")
    )
    if args.steady_only and kept.exists():
        bench += "_steady"  # saved apart from the whole run's nights
    elif args.from_warehouse:
        bench += "_steady"
        shutil.copyfile(args.from_warehouse, db)
        run(folder.data, db, out, folder.days[0] - timedelta(days=1))
        shutil.copyfile(db, kept)
    else:
        db.unlink(missing_ok=True)
        cases[f"initial_{args.loans}"] = run(
            folder.data, db, out, folder.days[0] - timedelta(days=1)
        )
        for day in folder.days[:-1]:  # the history nights: run, not reported
            folder.release(day)
            run(folder.data, db, out, day)
        shutil.copyfile(db, kept)
    folder.release()
    runs = []
    for _ in range(args.repeat):
        shutil.copyfile(kept, db)
        # The copy's gigabytes are written to disk before the night starts, not while it runs.
        os.sync()
        runs.append(run(folder.data, db, out, folder.last_day))
    steady = sorted(runs, key=lambda r: r["flow_seconds"])[(len(runs) - 1) // 2]
    if len(runs) > 1:
        steady["flow_seconds_runs"] = [r["flow_seconds"] for r in runs]
        steady["steps_seconds_runs"] = [r["steps_seconds"] for r in runs]
    cases[f"steady_{args.loans}"] = steady
    report(bench, cases, args)


if __name__ == "__main__":
    main()
