"""Shared helpers for the benchmark scripts: measure, print, record, compare.

Each benchmark script measures one or more named cases and calls :func:`report`, which
prints a table, writes ``benchmarks/results/<bench>.json`` and, with ``--baseline
FILE``, prints the change against an earlier result file and exits 1 when a case got
more than ``--tolerance`` slower or bigger.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def timed() -> Iterator[dict[str, float]]:
    """Measure wall seconds of a block: ``with timed() as t: ...; t["seconds"]``."""
    figures: dict[str, float] = {}
    start = time.perf_counter()
    try:
        yield figures
    finally:
        figures["seconds"] = round(time.perf_counter() - start, 3)


def best_of(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    """Run ``fn`` ``repeat`` times; the fastest wall time and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return round(best, 3), result


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--baseline", type=Path, help="an earlier results JSON to compare against")
    p.add_argument("--tolerance", type=float, default=0.25, help="allowed relative regression")
    p.add_argument("--no-save", action="store_true", help="print only; keep the results file")
    return p


def report(bench: str, cases: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    """Print ``cases`` ({case: {figure: value}}), save them and compare with a baseline."""
    print(
        f"\n{bench} on {platform.machine()} ({_cores()} cores), python {platform.python_version()}"
    )
    for case, figures in cases.items():
        shown = ", ".join(f"{k}={v}" for k, v in figures.items())
        print(f"  {case}: {shown}")
    payload = {
        "bench": bench,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"arch": platform.machine(), "cores": _cores()},
        "cases": cases,
    }
    # Read before saving: the baseline may be the very file the results replace.
    baseline = json.loads(args.baseline.read_text())["cases"] if args.baseline else None
    if not args.no_save:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{bench}.json").write_text(json.dumps(payload, indent=2) + "\n")
    if baseline is not None:
        sys.exit(_compare(baseline, cases, args.tolerance))


def _compare(base: dict[str, Any], now: dict[str, Any], tolerance: float) -> int:
    worse = 0
    print(f"\nagainst baseline (tolerance {tolerance:.0%}):")
    for case, figures in now.items():
        for key, value in figures.items():
            old = base.get(case, {}).get(key)
            if not isinstance(value, int | float) or not isinstance(old, int | float) or not old:
                continue
            change = (value - old) / old
            lower_is_better = key.endswith(("seconds", "_mb", "_s"))
            regressed = change > tolerance if lower_is_better else False
            worse += regressed
            print(
                f"  {case}.{key}: {old} -> {value} ({change:+.1%}){'  REGRESSION' if regressed else ''}"
            )
    return 1 if worse else 0


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))
