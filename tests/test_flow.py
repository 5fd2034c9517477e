"""The nightly flow under Prefect's test harness: a night, a failure and rerun, the lock."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import pytest

from lienwatch.entry import run_backfill, run_night
from lienwatch.errors import WarehouseBusy
from lienwatch.settings import Settings
from lienwatch.steps import flags as flags_step
from tests.helpers import stored_tables, tables
from tests.landing import landing, ledger

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]
AS_OF = date(2024, 6, 3)


def _folder(root: Path) -> Path:
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


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return _folder(tmp_path)


def night(folder: Path, tmp_path: Path, as_of: date = AS_OF) -> dict:
    return run_night(
        Settings(), data=folder, db=tmp_path / "wh.duckdb", out=tmp_path / "out", as_of=as_of
    )


@dataclass
class Clean:
    """An uninterrupted night over the folder, in a directory of its own (read only)."""

    root: Path
    summary: dict
    tables: dict[str, list]


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Clean:
    root = tmp_path_factory.mktemp("clean")
    summary = night(_folder(root), root)
    return Clean(root, summary, tables(root / "wh.duckdb"))


class TestNight:
    def test_full_night(self, clean):
        """A night completes, records itself in runs and writes its summary."""
        summary = clean.summary
        assert summary["status"] == "completed"
        assert (
            summary["steps"]["ingest"]["rows_loaded"] == 4 + 2 + 2
        )  # payments + loans + borrowers
        con = duckdb.connect(str(clean.root / "wh.duckdb"), read_only=True)
        assert con.execute("SELECT status, as_of_date FROM runs").fetchall() == [
            ("completed", AS_OF)
        ]
        con.close()
        assert (clean.root / "out" / AS_OF.isoformat() / "summary.json").exists()

    def test_rerun_changes_nothing(self, folder, tmp_path):
        """The same night twice leaves the same tables."""
        night(folder, tmp_path)
        first = tables(tmp_path / "wh.duckdb")
        night(folder, tmp_path)
        assert tables(tmp_path / "wh.duckdb") == first

    def test_failed_night_is_recorded_and_rerun_completes(
        self, folder, tmp_path, monkeypatch, clean
    ):
        """A step that fails marks the run failed with its reason; the rerun matches a clean night."""

        def broken(*args, **kwargs):
            raise RuntimeError("disk full while writing")

        monkeypatch.setattr(flags_step, "run", broken)
        with pytest.raises(RuntimeError, match="disk full"):
            night(folder, tmp_path)
        con = duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True)
        assert con.execute("SELECT status, reason FROM runs").fetchall() == [
            ("failed", "disk full while writing")
        ]
        con.close()
        monkeypatch.undo()
        assert night(folder, tmp_path)["status"] == "completed"
        assert tables(tmp_path / "wh.duckdb") == clean.tables

    def test_second_writer_refused_at_once(self, folder, tmp_path):
        """While another process runs a night, a second one fails at once with a clear message."""
        db = tmp_path / "wh.duckdb"
        # The with block closes the holder's pipe and waits for it, once killed.
        with subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys, time; from pathlib import Path; from lienwatch.night import writer_lock\n"
                f"with writer_lock(Path({str(db)!r})):\n"
                "    print('held', flush=True); time.sleep(60)",
            ],
            stdout=subprocess.PIPE,
            text=True,
        ) as holder:
            try:
                assert holder.stdout.readline().strip() == "held"
                started = time.monotonic()
                with pytest.raises(WarehouseBusy, match="another lienwatch night is running"):
                    night(folder, tmp_path)
                assert time.monotonic() - started < 5
            finally:
                holder.kill()
        assert not db.exists()  # nothing was written

    def test_backfill_over_a_week(self, folder, tmp_path):
        """Backfill runs each business day once and skips completed ones on a second pass."""
        kwargs = dict(
            data=folder,
            db=tmp_path / "wh.duckdb",
            out=tmp_path / "out",
            start=date(2024, 6, 3),
            end=date(2024, 6, 9),
        )
        lines = list(run_backfill(Settings(), **kwargs))
        assert sum("completed" in line for line in lines) == 5
        assert sum("weekend" in line for line in lines) == 2
        again = list(run_backfill(Settings(), **kwargs))
        assert sum("already complete" in line for line in again) == 5


class TestLettersNight:
    def test_rerun_gives_the_same_letters_and_files(self, folder, tmp_path):
        """A night's letters: the PDF, HTML and manifest; a rerun keeps ids and files, adds nothing."""
        summary = night(folder, tmp_path)
        assert summary["steps"]["letters"]["generated"] == 2
        db, day = tmp_path / "wh.duckdb", tmp_path / "out" / AS_OF.isoformat()
        before = stored_tables(db)["letters"]
        files = sorted(p.name for p in (day / "letters").iterdir())
        manifest = (day / "mail_manifest.csv").read_text(encoding="utf-8")
        assert len(files) == 2 * sum(1 for r in before if r[6] == "generated")
        assert all(p.stat().st_mode & 0o077 == 0 for p in (day / "letters").iterdir())
        night(folder, tmp_path)
        assert stored_tables(db)["letters"] == before
        assert sorted(p.name for p in (day / "letters").iterdir()) == files
        assert (day / "mail_manifest.csv").read_text(encoding="utf-8") == manifest

    def test_letters_fan_out_on_a_local_dask_cluster(self, folder, tmp_path, clean):
        """Rendering as Dask tasks (one letter per task) gives the same letters as the process pool."""
        local = clean.root  # the process pool's night
        dask_settings = Settings.model_validate(
            {"letters": {"fan_out": "dask", "render_workers": 2, "chunk_size": 1}}
        )
        summary = run_night(
            dask_settings, data=folder, db=tmp_path / "wh.duckdb", out=tmp_path / "out", as_of=AS_OF
        )
        assert summary["status"] == "completed"
        assert summary["steps"]["letters"]["generated"] == 2
        assert tables(tmp_path / "wh.duckdb")["letters"] == clean.tables["letters"]
        pdfs = sorted(
            p.name for p in (tmp_path / "out" / AS_OF.isoformat() / "letters").glob("*.pdf")
        )
        assert pdfs == sorted(
            p.name for p in (local / "out" / AS_OF.isoformat() / "letters").glob("*.pdf")
        )


def test_a_scheduled_night_on_a_holiday_is_skipped_and_says_why(monkeypatch, tmp_path: Path):
    """The schedule's night (no date asked for) on Thanksgiving: nothing runs, the summary
    names the holiday, and the warehouse is not touched."""
    import flows.nightly

    monkeypatch.setattr(flows.nightly, "today", lambda timezone: date(2026, 11, 26))
    summary = flows.nightly.nightly(
        data=str(tmp_path / "in"), db=str(tmp_path / "wh.duckdb"), out=str(tmp_path / "out")
    )
    assert summary["status"] == "skipped"
    assert summary["reason"] == "Thanksgiving Day: a Federal Reserve holiday"
    assert (tmp_path / "out" / "2026-11-26" / "summary.json").exists()
    assert not (tmp_path / "wh.duckdb").exists()
