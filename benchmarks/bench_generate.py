"""The generator at scale: time, peak memory and size of a landing folder.

uv run python benchmarks/bench_generate.py --loans 1000000 --months 24 [--profile P] [--baseline FILE]

Cases are named by profile: ``realistic_1000000_loans_24_months``,
``stressed_1000000_loans_24_months``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import parser, peak_rss_mb, report, timed
from lienwatch.generate import generate


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--loans", type=int, default=1_000_000)
    p.add_argument("--months", type=int, default=24)
    p.add_argument("--profile", choices=("realistic", "stressed"), default="realistic")
    p.add_argument("--out", type=Path, help="keep the folder here (default: a temporary one)")
    args = p.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="lienwatch-gen-")) / "landing"
    with timed() as t:
        summary = generate(out, loans=args.loans, months=args.months, profile=args.profile)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    rows = summary.rows
    report(
        "generate",
        {
            f"{args.profile}_{args.loans}_loans_{args.months}_months": {
                "seconds": t["seconds"],
                "peak_rss_mb": round(peak_rss_mb()),
                "rows": rows,
                "ledger_rows": summary.payments + summary.reversals,
                "ledger_files": summary.ledger_files,
                "disk_mb": round(size / 2**20),
            }
        },
        args,
    )
    if not args.out:
        shutil.rmtree(out.parent)


if __name__ == "__main__":
    main()
