"""Ingest: every landing row ends loaded or quarantined with the right reason."""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb
import pytest

from lienwatch.errors import FeedError
from lienwatch.ingest import ingest
from lienwatch.warehouse import connect
from tests.helpers import conserved
from tests.landing import LOANS, PAYMENT_HEADER, landing, ledger


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    c = connect(tmp_path / "wh.duckdb")
    yield c
    c.close()


def quarantined(con, source_file: str | None = None) -> list[tuple]:
    """(row_number, rule, column_name, severity) of quarantined rows, in file order."""
    where = "WHERE source_file = $f" if source_file else ""
    return con.execute(
        f"SELECT row_number, rule, column_name, severity FROM quarantine {where} "
        "ORDER BY source_file, row_number",
        {"f": source_file} if source_file else {},
    ).fetchall()


def txn_ids(con) -> list[str]:
    return [r[0] for r in con.execute("SELECT txn_id FROM payments ORDER BY txn_id").fetchall()]


class TestCleanFolder:
    def test_loads_everything_typed(self, tmp_path, con):
        """A clean folder loads every row with exact decimals and real dates."""
        data = landing(
            tmp_path / "in",
            {
                "p1.csv": ledger(
                    "T1,L1,2024-03-01,250.00,payment,,", "T2,L2,2024-03-02,400,payment,,"
                )
            },
        )
        summary = ingest(con, data)
        assert summary.totals()["rows_quarantined"] == 0
        assert con.execute("SELECT amount FROM payments WHERE txn_id = 'T2'").fetchone()[
            0
        ] == pytest.approx(400)
        assert (
            str(
                con.execute(
                    "SELECT typeof(amount), typeof(posted_date) FROM payments LIMIT 1"
                ).fetchone()
            )
            == "('DECIMAL(14,2)', 'DATE')"
        )
        conserved(con)

    def test_second_load_changes_nothing(self, tmp_path, con):
        """Loading the same folder twice leaves every table as it was."""
        data = landing(tmp_path / "in", {"p1.csv": ledger("T1,L1,2024-03-01,250.00,payment,,")})
        ingest(con, data)
        tables = [
            "payments",
            "loans",
            "borrowers",
            "quarantine",
            "ingested_files",
            "loans_history",
            "known_loans",
        ]
        before = {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in tables}
        summary = ingest(con, data)
        assert {f.status for f in summary.files} == {"unchanged", "seen_before"}
        after = {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in tables}
        assert before == after

    def test_unchanged_files_are_not_read_again(self, tmp_path, con, monkeypatch):
        """A night hashes only the files that changed since they were last read whole."""
        from lienwatch import feeds

        data = landing(
            tmp_path / "in",
            {
                "p1.csv": ledger("T1,L1,2024-03-01,250.00,payment,,"),
                "p2.csv": ledger("T2,L2,2024-03-02,400.00,payment,,"),
            },
        )
        read = []
        whole = feeds._check_utf8_and_hash
        monkeypatch.setattr(
            feeds, "_check_utf8_and_hash", lambda path, name: read.append(name) or whole(path, name)
        )
        ingest(con, data)
        first = sorted(read)
        assert "payments/p1.csv" in first and "payments/p2.csv" in first
        read.clear()
        summary = ingest(con, data)
        assert read == []
        assert {f.status for f in summary.files} == {"unchanged", "seen_before"}

        # Rewritten to another content of the same size with its times set back: read again.
        p1 = data / "payments" / "p1.csv"
        before = p1.stat()
        p1.write_text(ledger("T9,L1,2024-03-01,250.00,payment,,"))
        os.utime(p1, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert p1.stat().st_size == before.st_size and p1.stat().st_mtime_ns == before.st_mtime_ns
        summary = ingest(con, data)
        assert read == ["payments/p1.csv"]
        assert txn_ids(con) == ["T1", "T2", "T9"]
        conserved(con)

    def test_redropped_file_under_new_name_is_a_no_op(self, tmp_path, con):
        """A file with the same content under another name is recognised by its hash."""
        body = ledger("T1,L1,2024-03-01,250.00,payment,,")
        ingest(con, landing(tmp_path / "in", {"p1.csv": body, "copy-of-p1.csv": body}))
        assert txn_ids(con) == ["T1"]
        assert quarantined(con) == []

    def test_corrected_file_loads_only_new_rows(self, tmp_path, con):
        """A corrected file (new hash) loads the rows not loaded yet; the rest are duplicates."""
        data = landing(tmp_path / "in", {"p1.csv": ledger("T1,L1,2024-03-01,250.00,payment,,")})
        ingest(con, data)
        (data / "payments" / "p1-corrected.csv").write_text(
            ledger("T1,L1,2024-03-01,250.00,payment,,", "T2,L1,2024-04-01,250.00,payment,,")
        )
        ingest(con, data)
        assert txn_ids(con) == ["T1", "T2"]
        assert quarantined(con, "payments/p1-corrected.csv") == [
            (1, "already_loaded", "txn_id", "duplicate")
        ]
        conserved(con)

    def test_rows_dated_after_any_night_are_kept(self, tmp_path, con):
        """Ingest does not depend on the as-of date: future-dated rows load for later nights."""
        ingest(
            con, landing(tmp_path / "in", {"p.csv": ledger("T9,L1,2030-01-01,250.00,payment,,")})
        )
        assert txn_ids(con) == ["T9"]

    def test_snapshot_replaced_and_history_kept(self, tmp_path, con):
        """A new loans snapshot replaces the current one; the previous stays in history."""
        data = landing(tmp_path / "in")
        ingest(con, data)
        (data / "loans.csv").write_text(LOANS.replace("28000.00", "27750.00"))
        ingest(con, data)
        assert con.execute("SELECT count(*) FROM loans").fetchone()[0] == 2
        balances = con.execute(
            "SELECT load_id, current_balance FROM loans_history WHERE loan_id = 'L1' ORDER BY load_id"
        ).fetchall()
        assert [float(b) for _, b in balances] == [28000.0, 27750.0]

    def test_parquet_ledger_file(self, tmp_path, con):
        """A ledger file in Parquet is read like its CSV twin."""
        data = landing(tmp_path / "in")
        duckdb.execute(
            "COPY (SELECT 'T1' AS txn_id, 'L1' AS loan_id, DATE '2024-03-01' AS posted_date, "
            "250.00::DECIMAL(14,2) AS amount, 'payment' AS txn_type, NULL AS reverses_txn_id, "
            "NULL AS return_reason) TO $p (FORMAT parquet)",
            {"p": str(data / "payments" / "p.parquet")},
        )
        ingest(con, data)
        assert txn_ids(con) == ["T1"]
        conserved(con)


class TestRowLevelQuarantine:
    @pytest.mark.parametrize(
        ("row", "rule", "column"),
        [
            ("T1,L1,2026-02-30,250.00,payment,,", "type:date", "posted_date"),
            ("T1,L1,03/01/2024,250.00,payment,,", "type:date", "posted_date"),
            ("T1,L1,2024-03-01,-250.00,payment,,", "range", "amount"),
            ("T1,L1,2024-03-01,0.00,payment,,", "range", "amount"),
            ("T1,L1,2024-03-01,abc,payment,,", "type:money", "amount"),
            ("T1,L1,2024-03-01,12.345,payment,,", "type:money", "amount"),
            ("T1,LX,2024-03-01,250.00,payment,,", "reference", "loan_id"),
            ("T1,L1,2024-03-01,250.00,refund,,", "allowed_values", "txn_type"),
            (",L1,2024-03-01,250.00,payment,,", "required", "txn_id"),
            ("T1,L1,2024-03-01,250.00,reversal,T404,NSF", "reversal", "reverses_txn_id"),
            ("T1,L1,2024-03-01,250.00,reversal,,NSF", "reversal", "reverses_txn_id"),
        ],
    )
    def test_bad_row_is_quarantined_with_its_reason(self, tmp_path, con, row, rule, column):
        """Each kind of bad row ends in quarantine naming the rule and column; the good row loads."""
        data = landing(tmp_path / "in", {"p.csv": ledger("T0,L1,2024-03-01,250.00,payment,,", row)})
        ingest(con, data)
        assert quarantined(con) == [(2, rule, column, "error")]
        assert txn_ids(con) == ["T0"]
        conserved(con)

    def test_duplicate_txn_within_a_file(self, tmp_path, con):
        """The first row of a repeated txn_id loads; the repeat is quarantined."""
        ingest(
            con,
            landing(
                tmp_path / "in",
                {
                    "p.csv": ledger(
                        "T1,L1,2024-03-01,250.00,payment,,", "T1,L1,2024-03-01,250.00,payment,,"
                    )
                },
            ),
        )
        assert txn_ids(con) == ["T1"]
        assert quarantined(con) == [(2, "unique", "txn_id", "error")]

    def test_duplicate_txn_across_files(self, tmp_path, con):
        """The same payment in two files is taken once; the second copy is a duplicate."""
        ingest(
            con,
            landing(
                tmp_path / "in",
                {
                    "a.csv": ledger("T1,L1,2024-03-01,250.00,payment,,"),
                    "b.csv": ledger(
                        "T2,L1,2024-04-01,250.00,payment,,", "T1,L1,2024-03-01,250.00,payment,,"
                    ),
                },
            ),
        )
        assert txn_ids(con) == ["T1", "T2"]
        assert quarantined(con, "payments/b.csv") == [(2, "already_loaded", "txn_id", "duplicate")]
        conserved(con)

    def test_reversal_rules(self, tmp_path, con):
        """A reversal must name an unreversed payment of the same loan, dated before it, same amount."""
        ingest(
            con,
            landing(
                tmp_path / "in",
                {
                    "a.csv": ledger(
                        "P1,L1,2024-03-01,250.00,payment,,",
                        "P2,L2,2024-03-01,400.00,payment,,",
                        "R1,L1,2024-03-05,250.00,reversal,P1,NSF",
                        "R2,L1,2024-03-06,250.00,reversal,P1,NSF",
                        "R3,L1,2024-03-06,400.00,reversal,P2,NSF",
                        "R4,L2,2024-02-01,400.00,reversal,P2,NSF",
                        "R5,L2,2024-03-09,399.00,reversal,P2,NSF",
                        "R6,L2,2024-03-09,400.00,reversal,R1,NSF",
                    )
                },
            ),
        )
        assert txn_ids(con) == ["P1", "P2", "R1"]
        reasons = con.execute(
            "SELECT row_number, error FROM quarantine ORDER BY row_number"
        ).fetchall()
        assert [r for r, _ in reasons] == [4, 5, 6, 7, 8]
        text = " | ".join(e for _, e in reasons)
        for expected in (
            "already reversed",
            "another loan",
            "dated before",
            "amount differs",
            "itself a reversal",
        ):
            assert expected in text

    def test_reversal_of_payment_loaded_on_an_earlier_night(self, tmp_path, con):
        """A reversal in a later file may name a payment loaded before; a second one may not."""
        data = landing(tmp_path / "in", {"a.csv": ledger("P1,L1,2024-03-01,250.00,payment,,")})
        ingest(con, data)
        (data / "payments" / "b.csv").write_text(ledger("R1,L1,2024-03-05,250.00,reversal,P1,NSF"))
        ingest(con, data)
        (data / "payments" / "c.csv").write_text(ledger("R2,L1,2024-03-07,250.00,reversal,P1,NSF"))
        ingest(con, data)
        assert txn_ids(con) == ["P1", "R1"]
        assert quarantined(con, "payments/c.csv") == [(1, "reversal", "reverses_txn_id", "error")]

    def test_ragged_rows(self, tmp_path, con):
        """Rows with too few or too many fields are quarantined as structure errors."""
        ingest(
            con,
            landing(
                tmp_path / "in",
                {
                    "p.csv": PAYMENT_HEADER
                    + "T1,L1,2024-03-01,250.00,payment,,\nT2,L1,2024-03-01\nT3,L1,2024-03-01,1.00,payment,,,x\n"
                    + "T4,L1,2024-03-02,1.00,payment,,\n"
                },
            ),
        )
        assert txn_ids(con) == ["T1", "T4"]
        assert quarantined(con) == [
            (2, "structure", None, "error"),
            (3, "structure", None, "error"),
        ]
        conserved(con)

    def test_rows_keep_their_file_and_number_when_files_are_read_together(self, tmp_path, con):
        """One night's ledger files are read together (CSV files of one header in one
        scan): each loaded or quarantined row still names its own file and row, whatever
        the other files hold. Each txn_id says where it stands (``c3``: file c, row 3)."""

        def good(file: str, row: int) -> str:
            return f"{file}{row},L1,2024-03-01,{row}.00,payment,,"

        files = {
            "a.csv": ledger(good("a", 1), "a2,L1,2024-03-01", good("a", 3), good("a", 4)),
            "b.csv": ledger(good("b", 1), good("b", 2), "b3,L1,2024-03-01, 12.345 ,payment,,"),
            "c.csv": PAYMENT_HEADER.replace("\n", ",note\n")  # a header of its own
            + "".join(f"{good('c', r)},x\n" for r in (1, 2, 3)),
            "d.csv": ledger(
                "d1,L1",
                good("d", 2),
                good("d", 3),
                "d4,L1,2024-03-01,1.00,payment,,,x",
                good("d", 5),
            ),
            "e.csv": PAYMENT_HEADER,  # no rows
            "f.csv": ledger(*(good("f", r) for r in range(1, 7))),
        }
        data = landing(tmp_path / "in", files)
        duckdb.execute(
            "COPY (SELECT 'g1' AS txn_id, 'L1' AS loan_id, DATE '2024-03-01' AS posted_date, "
            "1.00::DECIMAL(14,2) AS amount, 'payment' AS txn_type, NULL AS reverses_txn_id, "
            "NULL AS return_reason) TO $p (FORMAT parquet)",
            {"p": str(data / "payments" / "c2.parquet")},
        )
        ingest(con, data)
        loaded = con.execute(
            "SELECT source_file, row_number, txn_id FROM payments ORDER BY source_file, row_number"
        ).fetchall()
        assert len(loaded) == 3 + 2 + 3 + 3 + 6 + 1
        for source, row, txn in loaded:
            assert txn == ("g1" if source.endswith(".parquet") else f"{source[9]}{row}")
        assert con.execute(
            "SELECT source_file, row_number, rule FROM quarantine ORDER BY source_file, row_number"
        ).fetchall() == [
            ("payments/a.csv", 2, "structure"),
            ("payments/b.csv", 3, "type:money"),
            ("payments/d.csv", 1, "structure"),
            ("payments/d.csv", 4, "structure"),
        ]
        kept = con.execute(
            "SELECT raw FROM quarantine WHERE source_file = 'payments/b.csv'"
        ).fetchall()
        assert json.loads(kept[0][0]) == {  # the row as it came, spaces and all
            "txn_id": "b3",
            "loan_id": "L1",
            "posted_date": "2024-03-01",
            "amount": " 12.345 ",
            "txn_type": "payment",
            "reverses_txn_id": None,
            "return_reason": None,
        }
        conserved(con)

    def test_bad_loan_rows(self, tmp_path, con):
        """Loans with an unknown borrower, a bad value or a repeated loan_id are quarantined."""
        bad = LOANS + (
            "L3,B9,2,heloc,2023-05-01,2023-06-01,400.00,240,9.25,5.00,4.00,CA,primary,,,,active\n"
            "L4,B1,3,heloc,2023-05-01,2023-06-01,400.00,240,9.25,5.00,4.00,CA,primary,,,,active\n"
            "L5,B1,2,heloc,2023-05-01,2023-06-01,400.00,240,9.25,5.00,4.00,CA,castle,,,,active\n"
            "L1,B1,2,heloc,2023-05-01,2023-06-01,400.00,240,9.25,5.00,4.00,CA,primary,,,,active\n"
        )
        ingest(con, landing(tmp_path / "in", loans=bad))
        assert quarantined(con, "loans.csv") == [
            (3, "reference", "borrower_id", "error"),
            (4, "allowed_values", "lien_position", "error"),
            (5, "allowed_values", "occupancy", "error"),
            (6, "unique", "loan_id", "error"),
        ]
        conserved(con)


class TestFileShapes:
    def test_bom_crlf_quoted_commas_and_newlines(self, tmp_path, con):
        """A BOM, CRLF line ends, quoted commas and a quoted newline all read correctly."""
        body = (
            "\ufeff"
            + PAYMENT_HEADER.replace("\n", "\r\n")
            + 'T1,L1,2024-03-01,250.00,payment,,"returned, then\r\nre-presented"\r\n'
            + "T2,L1,2024-04-01,250.00,payment,,\r\n"
        )
        ingest(con, landing(tmp_path / "in", {"p.csv": body}))
        assert txn_ids(con) == ["T1", "T2"]
        assert (
            con.execute("SELECT return_reason FROM payments WHERE txn_id = 'T1'").fetchone()[0]
            == "returned, then\r\nre-presented"
        )
        assert con.execute("SELECT row_number FROM payments WHERE txn_id = 'T2'").fetchone()[0] == 2

    def test_extra_column_is_kept_out_and_noted(self, tmp_path, con):
        """An extra column is allowed; it is recorded in the registry and not loaded."""
        body = PAYMENT_HEADER.strip() + ",branch\nT1,L1,2024-03-01,250.00,payment,,,SAC\n"
        ingest(con, landing(tmp_path / "in", {"p.csv": body}))
        assert txn_ids(con) == ["T1"]
        assert con.execute(
            "SELECT extra_columns FROM ingested_files WHERE feed = 'payments'"
        ).fetchone()[0] == ["branch"]

    def test_optional_acquired_in_default_column(self, tmp_path, con):
        """Loaded as true/false where the loans file has it, empty where it has not; a
        warehouse made before the column gains it, empty."""
        header, first, second = LOANS.splitlines()
        loans = f"{header},acquired_in_default\n{first},yes\n{second},\n"
        ingest(con, landing(tmp_path / "in", loans=loans))
        assert con.execute(
            "SELECT loan_id, acquired_in_default FROM loans ORDER BY loan_id"
        ).fetchall() == [("L1", True), ("L2", None)]
        con.execute("ALTER TABLE loans_history DROP COLUMN acquired_in_default")
        con.close()
        again = connect(tmp_path / "wh.duckdb")
        try:
            assert again.execute(
                "SELECT count(acquired_in_default), count(*) FROM loans_history"
            ).fetchone() == (0, 2)
            ingest(again, landing(tmp_path / "in2"))
            assert again.execute("SELECT count(*) FROM loans").fetchone()[0] == 2
        finally:
            again.close()

    def test_header_only_file_loads_nothing(self, tmp_path, con):
        """A header-only ledger file is registered with zero rows."""
        ingest(con, landing(tmp_path / "in", {"p.csv": PAYMENT_HEADER}))
        assert con.execute(
            "SELECT rows_read, rows_loaded FROM ingested_files WHERE feed = 'payments'"
        ).fetchone() == (0, 0)

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            (b"", "empty file"),
            (
                PAYMENT_HEADER.encode()
                + "T1,L1,2024-03-01,250.00,payment,,Caf\u00e9\n".encode("latin-1"),
                "not UTF-8 text: byte 0xe9 on line 2",
            ),
            (
                b"txn_id,loan_id,posted_date,txn_type\nT1,L1,2024-03-01,payment\n",
                "required column missing: amount",
            ),
            (
                b"txn_id,txn_id,loan_id,posted_date,amount,txn_type,reverses_txn_id,return_reason\n",
                "column named twice",
            ),
        ],
    )
    def test_file_level_failure_loads_nothing(self, tmp_path, con, body, message):
        """A broken file stops the night with its name and problem, and nothing is loaded."""
        data = landing(
            tmp_path / "in",
            {"a-good.csv": ledger("T1,L1,2024-03-01,250.00,payment,,"), "b-bad.csv": body},
        )
        with pytest.raises(FeedError) as caught:
            ingest(con, data)
        assert str(caught.value).startswith("payments/b-bad.csv: ")
        assert message in str(caught.value)
        assert con.execute("SELECT count(*) FROM payments").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM ingested_files").fetchone()[0] == 0

    def test_missing_required_feed(self, tmp_path, con):
        """A landing folder without borrowers.csv is refused, naming the feed."""
        data = landing(tmp_path / "in")
        (data / "borrowers.csv").unlink()
        with pytest.raises(FeedError, match=r"^borrowers.csv: required feed is missing"):
            ingest(con, data)
