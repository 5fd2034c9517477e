"""Benchmark: PDF letters per second, on one core and fanned out over every core.

    uv run python benchmarks/bench_letters.py [--letters 1000] [--baseline FILE]

Renders ``--letters`` letters (a mix of every template in English and Spanish, with
options and terms: each letter composed from its jinja2 template, checked against the
compliance checklist, written as HTML and as a Typst PDF) into a temporary folder:

- ``one_core``: in this process, one reused Typst compiler (after a warm-up letter).
- ``all_cores``: over a process pool of every core (process start-up included).

Target: at least 100 PDF letters per second per core.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import date
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import parser, peak_rss_mb, report
from lienwatch import letters as render
from lienwatch.settings import Settings
from transforms.contract import LETTER_TEMPLATES

AS_OF = date(2026, 11, 20)
OPTIONS = [
    {
        "code": "repayment_plan",
        "name": "Repayment plan",
        "description": "Catch up over several months: you pay "
        "your regular payment plus part of the amount past due each month until you are current.",
        "terms": "6 monthly payments of $600.00, the last $600.00",
        "notes": [],
    },
    {
        "code": "forbearance",
        "name": "Forbearance",
        "description": "A temporary pause or reduction of your "
        "payments while you recover from a hardship.",
        "terms": "up to 3 months at a time",
        "notes": [],
    },
    {
        "code": "loan_modification",
        "name": "Loan modification",
        "description": "A permanent change to the loan's terms to make the payment affordable.",
        "terms": "",
        "notes": [],
    },
]


def letters(n: int) -> list[dict]:
    settings = Settings()
    servicer = {lang: render.servicer_block(settings, lang) for lang in ("en", "es")}
    out = []
    for i in range(n):
        template = LETTER_TEMPLATES[i % len(LETTER_TEMPLATES)]
        language = "es" if i % 4 == 0 else "en"
        row = {
            "letter_id": f"B{i:07d}",
            "template": template,
            "language": language,
            "loan_id": f"LN{i:08d}",
            "first_name": "María José",
            "last_name": f"Núñez {i}",
            "address_line1": f"{i} Camino del Río",
            "address_line2": "Apt 4" if i % 3 else None,
            "city": "Sacramento",
            "state": "CA",
            "zip": "95814",
            "days_past_due": 30 + i % 60,
            "amount_past_due": Decimal("812.40"),
            "oldest_unpaid_due_date": date(2026, 10, 11),
            "installment_amount": Decimal("400.00"),
            "next_change_amount": Decimal("520.00"),
            "next_change_date": date(2027, 1, 1),
            "product": "closed_end",
            "occupancy": "primary",
            "acquired_in_default": i % 40 == 7,
        }
        out.append(
            render.letter_payload(
                row, OPTIONS, servicer[language], AS_OF, collector_for_every_loan=False
            )
        )
    return out


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--letters", type=int, default=1000)
    args = p.parse_args()
    batch = letters(args.letters)
    cores = os.cpu_count() or 1
    cases = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        render.render_all(batch[:1], folder / "warm", workers=1)
        started = time.perf_counter()
        results = render.render_all(batch, folder / "one", workers=1)
        seconds = time.perf_counter() - started
        pages = sum(r["pages"] or 0 for r in results)
        cases["one_core"] = {
            "letters": len(batch),
            "pages": pages,
            "seconds": round(seconds, 2),
            "letters_per_second": round(len(batch) / seconds, 1),
            "peak_rss_mb": round(peak_rss_mb()),
            "failed_checklist": sum(1 for r in results if r["problems"]),
        }
        started = time.perf_counter()
        results = render.render_all(batch, folder / "all", workers=cores)
        seconds = time.perf_counter() - started
        cases["all_cores"] = {
            "letters": len(batch),
            "cores": cores,
            "seconds": round(seconds, 2),
            "letters_per_second": round(len(batch) / seconds, 1),
            "per_core": round(len(batch) / seconds / cores, 1),
        }
    report("letters", cases, args)


if __name__ == "__main__":
    main()
