"""A generated landing folder for the ingest and night benchmarks, with its last day held back.

``prepare(root, loans, months)`` generates (once, cached under ``root``) a landing folder
of ``loans`` loans and ``months`` months, and moves the last day's ledger file aside so
that a benchmark can load the history first and then measure a steady night that adds
that one day.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path


@dataclass(frozen=True)
class Prepared:
    data: Path
    held_back: Path  # the last day's ledger file, outside the folder
    last_day: date

    def release(self) -> Path:
        """Put the held-back day into the landing folder (the steady night's new file)."""
        target = self.data / "payments" / self.held_back.name
        shutil.copyfile(self.held_back, target)
        return target


def prepare(root: Path, loans: int, months: int, seed: int = 7) -> Prepared:
    from lienwatch.generate import generate

    data = root / f"landing-{loans}-{months}"
    held = root / f"held-{loans}-{months}"
    if not (data / "loans.csv").exists():
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(held, ignore_errors=True)
        generate(data, loans=loans, months=months, seed=seed)
        held.mkdir(parents=True)
        last = sorted((data / "payments").glob("payments_*.csv"))[-1]
        shutil.move(str(last), held / last.name)
    file = sorted(held.glob("payments_*.csv"))[-1]
    (data / "payments" / file.name).unlink(missing_ok=True)
    return Prepared(data, file, date.fromisoformat(file.stem.removeprefix("payments_")))
