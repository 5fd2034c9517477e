"""A whole night end to end at scale, per stage and in total.

    uv run python benchmarks/bench_night.py --loans 100000 --months 24 [--baseline FILE]

Generates (once) a landing folder, runs the first night on the day before its last
ledger day (the initial load and history), then a steady night that adds the last
day's payment file. The warehouse as the first night left it is kept beside the
database; ``--steady-only`` starts from that copy and times the steady night alone
(saved as ``night_<N>_steady``). Each night runs in its own process through the
Prefect flow in local mode; the figures per stage are the flow's own (seconds, and the
process's peak memory after the stage; CPU seconds of all its threads, steadier than
wall time when other work shares the machine). Letters are decided but not rendered (``letters.render =
false``); PDF throughput is ``bench_letters.py``'s. Targets at 1,000,000 loans: a
steady night under 30 s excluding PDF rendering, under 4 GB.
"""

from __future__ import annotations

import json
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
import json, sys, time
from datetime import date
from pathlib import Path
from lienwatch.night import run_night
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
    done = subprocess.run([sys.executable, "-c", NIGHT, str(data), str(db), str(out), as_of.isoformat()],
                          capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"the night of {as_of} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    line = next(x for x in done.stdout.splitlines() if x.startswith("SUMMARY "))
    summary = json.loads(line.removeprefix("SUMMARY "))
    figures = {"process_seconds": round(time.perf_counter() - started, 2),
               "flow_seconds": summary["wall_seconds"]}
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
    p.add_argument("--steady-only", action="store_true",
                   help="reuse the warehouse kept after an earlier run's first night and time the steady night alone")
    args = p.parse_args()
    from benchmarks.nightly_folder import prepare

    args.work.mkdir(parents=True, exist_ok=True)
    folder = prepare(args.work, args.loans, args.months)
    db, out = args.work / f"night-{args.loans}.duckdb", args.work / f"out-{args.loans}"
    kept = db.with_name(db.stem + ".after-first-night.duckdb")
    cases = {}
    bench = f"night_{args.loans}"
    if args.steady_only and kept.exists():
        shutil.copyfile(kept, db)
        bench = f"night_{args.loans}_steady"  # saved apart from the whole run's two nights
    else:
        db.unlink(missing_ok=True)
        cases[f"initial_{args.loans}"] = run(folder.data, db, out, folder.last_day - timedelta(days=1))
        shutil.copyfile(db, kept)
    folder.release()
    cases[f"steady_{args.loans}"] = run(folder.data, db, out, folder.last_day)
    report(bench, cases, args)


if __name__ == "__main__":
    main()
