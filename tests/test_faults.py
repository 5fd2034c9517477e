"""Faults: a night killed (SIGKILL) at each stage, or failing, then rerun, ends as an uninterrupted night."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import pytest

from tests.helpers import tables
from tests.landing import landing, ledger

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]
AS_OF = date(2024, 6, 3)

NIGHT = """
import sys
from datetime import date
from pathlib import Path
from lienwatch.entry import run_night
from lienwatch.settings import Settings
run_night(Settings(), data=Path(sys.argv[1]), db=Path(sys.argv[2]), out=Path(sys.argv[3]),
          as_of=date.fromisoformat(sys.argv[4]))
"""
# The end of each step (a step's start is the previous step's end: nothing runs between
# them), and the middle of letter rendering, with one letter file written.
POINTS = ["ingest:end", "delinquency:end", "options:end", "letters:file", "letters:end"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faults")
    return landing(
        root / "in",
        {
            "p1.csv": ledger(
                "T1,L1,2024-03-01,250.00,payment,,", "T2,L2,2024-03-01,400.00,payment,,"
            ),
            "p2.csv": ledger(
                "T3,L1,2024-04-01,250.00,payment,,", "T4,L1,2030-01-01,1.00,payment,,"
            ),
        },
    )


def night(folder: Path, root: Path, fault: str | None = None) -> subprocess.CompletedProcess:
    """A night in its own process, reporting to the test's Prefect server."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value() or ""}
    env.pop("LIENWATCH_FAULT", None)
    if fault:
        env["LIENWATCH_FAULT"] = fault
    return subprocess.run(
        [
            sys.executable,
            "-c",
            NIGHT,
            str(folder),
            str(root / "wh.duckdb"),
            str(root / "out"),
            AS_OF.isoformat(),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def outputs(root: Path) -> dict[str, str]:
    """Every file of the night's output (letters, manifest), by name, as a content hash."""
    day = root / "out" / AS_OF.isoformat()
    return {
        str(p.relative_to(day)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(day.rglob("*"))
        if p.is_file() and p.name != "summary.json" and "validation" not in p.parts
    }


@pytest.fixture(scope="module")
def clean(folder, tmp_path_factory) -> tuple[dict, dict]:
    root = tmp_path_factory.mktemp("clean")
    done = night(folder, root)
    assert done.returncode == 0, done.stderr
    return tables(root / "wh.duckdb"), outputs(root)


def test_killed_at_each_stage_then_rerun_equals_an_uninterrupted_night(folder, clean, tmp_path):
    """One warehouse, killed at every point in turn (each night a rerun of the one
    killed before it), then a night left to finish."""
    letters = tmp_path / "out" / AS_OF.isoformat() / "letters"
    for point in POINTS:
        killed = night(folder, tmp_path, f"{point}:kill")
        assert killed.returncode == -signal.SIGKILL, (point, killed.stderr)
        if letters.exists():
            assert not any(
                p.name.endswith(".pdf") and p.stat().st_size == 0 for p in letters.iterdir()
            ), point
    rerun = night(folder, tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    expected_tables, expected_files = clean
    assert tables(tmp_path / "wh.duckdb") == expected_tables
    assert outputs(tmp_path) == expected_files
    con = duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True)
    try:
        statuses = [
            r[0] for r in con.execute("SELECT status FROM runs ORDER BY started_at").fetchall()
        ]
    finally:
        con.close()
    assert statuses == ["interrupted"] * len(POINTS) + ["completed"]


@pytest.mark.parametrize("point", ["letters:file"])
def test_failed_then_rerun_equals_an_uninterrupted_night(point, folder, clean, tmp_path):
    failed = night(folder, tmp_path, f"{point}:fail")
    assert failed.returncode != 0
    assert f"injected fault at {point}" in failed.stderr
    assert night(folder, tmp_path).returncode == 0
    assert tables(tmp_path / "wh.duckdb") == clean[0]
    assert outputs(tmp_path) == clean[1]


def test_a_full_disk_still_gets_its_one_line(folder, clean, tmp_path):
    """The disk fills while letters are written, so the failure cannot be recorded either:
    the command still exits 2 with the reason in one line on stderr, and once there is
    space again the rerun completes the night as if nothing had happened."""
    from prefect.settings import PREFECT_API_URL

    env = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value() or "",
        "LIENWATCH_FAULT": "letters:file:nospace",
    }
    done = subprocess.run(
        [
            shutil.which("lienwatch") or "lienwatch",
            "run",
            "--data",
            str(folder),
            "--db",
            str(tmp_path / "wh.duckdb"),
            "--out",
            str(tmp_path / "out"),
            "--as-of",
            AS_OF.isoformat(),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stdout
    assert done.stderr.splitlines() == [
        "lienwatch: [Errno 28] No space left on device: 'letters:file'"
    ]
    assert "the failure could not be recorded in the warehouse" in done.stdout

    assert night(folder, tmp_path).returncode == 0
    assert tables(tmp_path / "wh.duckdb") == clean[0]
    assert outputs(tmp_path) == clean[1]
    con = duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True)
    try:
        statuses = [
            r[0] for r in con.execute("SELECT status FROM runs ORDER BY started_at").fetchall()
        ]
    finally:
        con.close()
    assert statuses == ["interrupted", "completed"]


def test_the_nights_compared_are_whole(clean):
    """What the fault tests compare is the whole night, not an empty or partial one: every
    table but the run bookkeeping, with the night's rows (2 loans: 2 flags, 2 letters,
    12 options each, 13 + 5 month ends of status), and every output file: the 2 letters
    as PDF and HTML, the mail manifest, the review page, the queue (CSV and workbook) and
    the call list; and the five kill points."""
    tables_, files = clean
    assert len(POINTS) == 5
    assert {name: len(rows) for name, rows in tables_.items()} == {
        "borrowers": 2,
        "borrowers_history": 2,
        "bucket_transitions": 8,
        "delinquency_runs_month_end": 2,
        "delinquency_starts": 2,
        "hardship_options": 24,
        "known_loans": 2,
        "ledger_net_paid": 2,  # kept for the next night
        "ledger_net_paid_as_of": 1,
        "letters": 2,
        "letter_history": 0,  # the optional go-live feed, not in the folder
        "letter_history_history": 0,
        "loans": 2,
        "loans_history": 2,
        "loan_status": 2,
        "loan_status_month_end": 18,
        "loan_risk": 0,  # no model is in use
        "month_end_points": 2,  # the payment histories' month ends, kept for the month's nights
        "risk_models": 0,
        "loss_mit": 0,
        "loss_mit_history": 0,
        "payments": 4,
        "payment_changes": 0,
        "payment_changes_history": 0,
        "review_cases": 2,
        "review_case_events": 2,
        "review_decisions": 0,
        "review_promises": 0,
        "risk_flags": 2,
        "roll_rates": 17,
        "senior_liens": 0,
        "senior_liens_history": 0,
        "spell_state": 1,
    }
    letters = sorted(name for name in files if name.startswith("letters/"))
    assert len({Path(name).stem for name in letters}) == 2  # two letters, each as PDF and HTML
    assert sorted(Path(name).suffix for name in letters) == [".html", ".html", ".pdf", ".pdf"]
    assert sorted(set(files) - set(letters)) == [
        "call_list.csv",
        "mail_manifest.csv",
        "queue.csv",
        "queue.xlsx",
        "review.html",
    ]
