"""Duplicates and disorder in the landing folder: defined behaviour, no lost rows."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import duckdb
import pytest

from lienwatch.night import Night
from lienwatch.settings import Settings
from lienwatch.steps import delinquency as delinquency_step
from lienwatch.steps import flags as flags_step
from lienwatch.steps import ingest as ingest_step
from lienwatch.steps import letters as letters_step
from lienwatch.steps import options as options_step
from tests.helpers import conserved
from tests.landing import LOANS, landing, ledger

pytestmark = pytest.mark.slow

AS_OF = date(2024, 6, 3)
MARCH = ledger("P1,L1,2024-03-01,250.00,payment,,", "Q1,L2,2024-03-01,400.00,payment,,")
APRIL = ledger("P2,L1,2024-04-01,250.00,payment,,", "Q2,L2,2024-04-01,400.00,payment,,")
MAY = ledger("P3,L1,2024-05-01,250.00,payment,,", "R3,L1,2024-05-04,250.00,reversal,P3,NSF")


def run(folder: Path, db: Path, as_of: date = AS_OF) -> None:
    n = Night(data=folder, db=db, out=db.parent / "out", as_of=as_of, run_id=str(as_of))
    ingest_step.run(n)
    delinquency_step.run(n, Settings())


def status(db: Path) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(
            "SELECT loan_id, days_past_due, amount_past_due, oldest_unpaid_due_date "
            "FROM loan_status WHERE as_of_date = $d ORDER BY loan_id",
            {"d": AS_OF},
        ).fetchall()
    finally:
        con.close()


def test_files_out_of_date_order_give_the_same_night(tmp_path):
    """May's file arrives first, then April's, then March's: the night equals the in-order one."""
    in_order = landing(tmp_path / "a", {"1.csv": MARCH, "2.csv": APRIL, "3.csv": MAY})
    run(in_order, tmp_path / "a.duckdb")
    shuffled = landing(tmp_path / "b", {"3.csv": MAY})
    run(shuffled, tmp_path / "b.duckdb", date(2024, 5, 10))
    (shuffled / "payments" / "2.csv").write_text(APRIL)
    run(shuffled, tmp_path / "b.duckdb", date(2024, 5, 20))
    (shuffled / "payments" / "1.csv").write_text(MARCH)
    run(shuffled, tmp_path / "b.duckdb")
    assert status(tmp_path / "b.duckdb") == status(tmp_path / "a.duckdb")
    # March and April paid, May's payment returned: L1 is 33 days behind from 1 May.
    assert status(tmp_path / "a.duckdb")[0][:2] == ("L1", 33)


def test_same_payment_in_two_files_counts_once(tmp_path):
    folder = landing(
        tmp_path / "in",
        {"1.csv": MARCH, "1-again.csv": MARCH + "P2,L1,2024-04-01,250.00,payment,,\n"},
    )
    run(folder, tmp_path / "wh.duckdb")
    con = duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM payments WHERE txn_id = 'P1'").fetchall() == [(1,)]
        assert con.execute(
            "SELECT count(*) FROM quarantine WHERE severity = 'duplicate'"
        ).fetchall() == [(2,)]
        conserved(con)
    finally:
        con.close()


def test_reversal_before_its_payment_is_quarantined_not_lost(tmp_path):
    """The documented limit: a reversal ahead of its payment's file waits in quarantine with the reason."""
    folder = landing(tmp_path / "in", {"1.csv": ledger("R9,L1,2024-03-05,250.00,reversal,P9,NSF")})
    run(folder, tmp_path / "wh.duckdb")
    (folder / "payments" / "2.csv").write_text(ledger("P9,L1,2024-03-01,250.00,payment,,"))
    run(folder, tmp_path / "wh.duckdb")
    con = duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT source_file, rule, error FROM quarantine").fetchall() == [
            (
                "payments/1.csv",
                "reversal",
                "reversal does not match a payment it can undo: no payment has that txn_id",
            )
        ]
        conserved(con)
    finally:
        con.close()
    # Redelivered after its payment, the reversal loads (a new file, so not a duplicate by hash).
    (folder / "payments" / "3.csv").write_text(
        ledger("R9,L1,2024-03-05,250.00,reversal,P9,NSF") + "\n"
    )
    run(folder, tmp_path / "wh.duckdb")
    con = duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT txn_id FROM payments ORDER BY txn_id").fetchall() == [
            ("P9",),
            ("R9",),
        ]
    finally:
        con.close()


def test_a_loan_dropped_from_the_snapshot_keeps_its_payments(tmp_path):
    folder = landing(tmp_path / "in", {"1.csv": MARCH})
    run(folder, tmp_path / "wh.duckdb", date(2024, 3, 10))
    (folder / "loans.csv").write_text("\n".join(LOANS.splitlines()[:2]) + "\n")  # L2 is gone
    (folder / "payments" / "2.csv").write_text(APRIL)
    run(folder, tmp_path / "wh.duckdb")
    con = duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True)
    try:
        assert con.execute(
            "SELECT txn_id FROM payments WHERE loan_id = 'L2' ORDER BY 1"
        ).fetchall() == [("Q1",), ("Q2",)]
        assert con.execute(
            "SELECT loan_id FROM loan_status WHERE as_of_date = $d", {"d": AS_OF}
        ).fetchall() == [("L1",)]
        conserved(con)
    finally:
        con.close()


def test_borrower_text_is_data_not_sql_or_markup(tmp_path):
    """Names that look like SQL, jinja2 or Typst go through a whole night as plain text."""
    from tests.landing import BORROWERS

    hostile = "Robert'); DROP TABLE payments; --"
    people = BORROWERS.replace("José,Núñez", f'"{hostile}","{{{{ 7*7 }}}} #pagebreak() $x$"')
    folder = landing(tmp_path / "in", {"1.csv": MARCH, "2.csv": APRIL}, borrowers=people)
    db = tmp_path / "wh.duckdb"
    n = Night(data=folder, db=db, out=tmp_path / "out", as_of=AS_OF, run_id="x")
    ingest_step.run(n)
    delinquency_step.run(n, Settings())
    flags_step.run(n, Settings())
    options_step.run(n, Settings())
    made = letters_step.run(n, Settings())
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM payments").fetchall() == [(4,)]
        assert con.execute(
            "SELECT first_name, last_name FROM borrowers WHERE borrower_id = 'B1'"
        ).fetchall() == [(hostile, "{{ 7*7 }} #pagebreak() $x$")]
    finally:
        con.close()
    # The night goes through; the letter to a name that looks like code is held for the
    # review team before mailing, never printed, and the other letter goes out.
    assert made["generated"] == 1
    con = duckdb.connect(str(db), read_only=True)
    try:
        held = con.execute(
            "SELECT suppression_reason FROM letters WHERE borrower_id = 'B1' AND status <> 'generated'"
        ).fetchall()
    finally:
        con.close()
    assert len(held) == 1 and held[0][0].startswith("held for review: ")
    manifest = (tmp_path / "out" / AS_OF.isoformat() / "mail_manifest.csv").read_text()
    assert "DROP TABLE" not in manifest and "7*7" not in manifest


def test_spells_rebuilt_in_parts_equal_the_whole(tmp_path, monkeypatch):
    """At scale the bucket spells are rebuilt a part of the loans at a time: the same
    tables as in one part, and every month end's roll rates, on a generated portfolio."""
    from lienwatch.generate import generate

    data = tmp_path / "landing"
    generate(data, loans=60, months=3, seed=5)
    tables = (
        "bucket_transitions",
        "delinquency_runs_month_end",
        "delinquency_starts",
        "roll_rates",
    )
    got = {}
    loaded = tmp_path / "loaded.duckdb"
    ingest_step.run(
        Night(data=data, db=loaded, out=tmp_path / "out", as_of=date(2026, 11, 20), run_id="i")
    )
    for name, part_rows in (("whole", 10**9), ("parts", 40)):
        monkeypatch.setattr(delinquency_step, "SPELL_PART_ROWS", part_rows)
        db = tmp_path / f"{name}.duckdb"
        shutil.copyfile(loaded, db)
        delinquency_step.run(
            Night(data=data, db=db, out=tmp_path / "out", as_of=date(2026, 11, 20), run_id=name),
            Settings(),
        )
        con = duckdb.connect(str(db), read_only=True)
        try:
            got[name] = {
                t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in tables
            }
            months = con.execute(
                "SELECT count(DISTINCT as_of_date) FROM loan_status_month_end"
            ).fetchall()[0][0]
            rolled = con.execute(
                "SELECT count(DISTINCT month_end_date) FROM roll_rates"
            ).fetchall()[0][0]
        finally:
            con.close()
        assert rolled == months - 1 >= 2
    assert all(got["whole"][t] for t in tables)
    assert got["parts"] == got["whole"]
