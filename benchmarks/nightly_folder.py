"""A generated landing folder for the ingest and night benchmarks, with its last days held back.

``prepare(root, loans, months, days, profile)`` generates (once, cached under ``root``
per profile) a landing folder of ``loans`` loans and ``months`` months, of the stressed
profile by default (the one the saved figures were measured on: many flagged loans, the
heavy case for every step after the delinquency engine) or the realistic one, and moves the last ``days`` days' ledger
files aside, so that a benchmark can load the history first and then run the nights
that add those days one at a time (the last of them is the steady night it measures).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path


def _day(file: Path) -> date:
    return date.fromisoformat(file.stem.removeprefix("payments_"))


@dataclass(frozen=True)
class Prepared:
    data: Path
    held: tuple[Path, ...]  # the held-back days' ledger files, outside the folder, in date order

    @property
    def days(self) -> list[date]:
        return [_day(f) for f in self.held]

    @property
    def last_day(self) -> date:
        return self.days[-1]

    def release(self, day: date | None = None) -> Path:
        """Put one held-back day (the last by default) into the landing folder."""
        file = next(f for f in self.held if _day(f) == (day or self.last_day))
        target = self.data / "payments" / file.name
        shutil.copyfile(file, target)
        return target


def prepare(
    root: Path,
    loans: int,
    months: int,
    days: int = 1,
    seed: int = 7,
    profile: str = "stressed",
) -> Prepared:
    from lienwatch.generate import generate

    # The stressed folders keep their old names, so earlier caches stay valid.
    key = f"{loans}-{months}" + ("" if profile == "stressed" else f"-{profile}")
    data = root / f"landing-{key}"
    held = root / f"held-{key}"
    if not (data / "loans.csv").exists():
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(held, ignore_errors=True)
        generate(data, loans=loans, months=months, seed=seed, profile=profile)
    held.mkdir(parents=True, exist_ok=True)
    # Hold back the last ``days`` days (more than an earlier run held, if it asks for more).
    files = sorted(  # by day (the name), wherever the file is now
        {
            f.name: f
            for f in [*held.glob("payments_*.csv"), *(data / "payments").glob("payments_*.csv")]
        }.values(),
        key=lambda f: f.name,
    )
    wanted = [f.name for f in files[-days:]]
    for name in wanted:
        if not (held / name).exists():
            shutil.move(str(data / "payments" / name), held / name)
        (data / "payments" / name).unlink(missing_ok=True)
    for file in held.glob("payments_*.csv"):  # held by an earlier run but not wanted now
        if file.name not in wanted:
            shutil.move(str(file), data / "payments" / file.name)
    return Prepared(data, tuple(held / name for name in wanted))
