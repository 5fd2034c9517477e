"""The demo's working landing folder: the sample released to the nights one day at a time.

A servicer's landing folder gains a day of ledger each night. The bundled sample holds
every day at once, so the demo copies it into a landing folder of its own (beside its
warehouse, never inside the sample) holding the snapshots and the ledger files up to
the night before its first night, and before each night copies in that night's ledger
file(s). The first night takes in the history; each later night, one new day.
"""

from __future__ import annotations

import re
import shutil
from datetime import date
from pathlib import Path

LEDGER_FILE = re.compile(r"payments_(\d{4}-\d{2}-\d{2})\.csv")


def ledger_day(file: Path) -> date | None:
    """The day a ledger file is named for (payments_YYYY-MM-DD.csv), None if none is."""
    found = LEDGER_FILE.fullmatch(file.name)
    if found is None:
        return None
    try:
        return date.fromisoformat(found[1])
    except ValueError:
        return None


def stage(sample: Path, landing: Path, first_night: date) -> Path:
    """Make ``landing`` anew: the sample's snapshot files and its ledger files dated before
    ``first_night`` (and any not named for a day). Returns ``landing``."""
    if landing.exists():
        shutil.rmtree(landing)
    (landing / "payments").mkdir(parents=True, mode=0o700)
    for file in sample.iterdir():
        if file.is_file() and file.suffix == ".csv":
            shutil.copy2(file, landing / file.name)
    for file in sorted((sample / "payments").iterdir()):
        day = ledger_day(file)
        if file.is_file() and (day is None or day < first_night):
            shutil.copy2(file, landing / "payments" / file.name)
    return landing


def release(sample: Path, landing: Path, night: date) -> list[str]:
    """Copy into ``landing`` the sample's ledger files dated up to ``night`` that it does
    not hold yet; returns their names."""
    released = []
    for file in sorted((sample / "payments").iterdir()):
        day = ledger_day(file)
        target = landing / "payments" / file.name
        if day is not None and day <= night and not target.exists():
            shutil.copy2(file, target)
            released.append(file.name)
    return released
