"""The sample-portfolio generator: deterministic, in the contract's format, realistic."""

from __future__ import annotations

import filecmp
from pathlib import Path

import polars as pl
import pytest

from lienwatch.generate import BEHAVIOURS, generate
from lienwatch.ingest import ingest
from lienwatch.warehouse import connect
from transforms.contract import FEEDS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("gen") / "landing"
    return out, generate(out, loans=1500, months=24, seed=11)


def same_tree(a: Path, b: Path) -> bool:
    compared = filecmp.dircmp(a, b)
    if compared.left_only or compared.right_only or compared.diff_files or compared.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, compared.common_files, shallow=False)
    return (
        not mismatch and not errors and all(same_tree(a / d, b / d) for d in compared.common_dirs)
    )


class TestGenerate:
    def test_deterministic_by_seed(self, tmp_path):
        """The same seed writes byte-identical files; another seed writes others."""
        generate(tmp_path / "a", loans=300, months=6, seed=3)
        generate(tmp_path / "b", loans=300, months=6, seed=3)
        generate(tmp_path / "c", loans=300, months=6, seed=4)
        assert same_tree(tmp_path / "a", tmp_path / "b")
        assert not same_tree(tmp_path / "a", tmp_path / "c")

    def test_headers_follow_the_contract(self, folder):
        """Every feed file has exactly the contract's columns, in order."""
        out, _ = folder
        for name, feed in FEEDS.items():
            path = out / f"{name}.csv" if feed.snapshot else sorted((out / "payments").iterdir())[0]
            assert path.read_text(encoding="utf-8").splitlines()[0] == ",".join(feed.column_names)

    def test_passes_every_feed_rule(self, folder, tmp_path):
        """Ingest validates every generated row and quarantines none."""
        out, summary = folder
        con = connect(tmp_path / "wh.duckdb")
        totals = ingest(con, out).totals()
        con.close()
        assert totals["rows_quarantined"] == 0
        assert totals["rows_loaded"] == (
            summary.loans
            + summary.borrowers
            + summary.payments
            + summary.reversals
            + summary.payment_changes
            + summary.senior_liens
            + summary.loss_mit
        )

    def test_portfolio_mix(self, folder):
        """About two thirds second liens, mostly California, HELOCs with draw periods, some Spanish."""
        out, _ = folder
        loans = pl.read_csv(out / "loans.csv", infer_schema=False)
        people = pl.read_csv(out / "borrowers.csv", infer_schema=False)
        seconds = (loans["lien_position"] == "2").mean()
        assert 0.6 < seconds < 0.73
        assert (loans["property_state"] == "CA").mean() > 0.7
        assert loans.filter(pl.col("product") == "heloc")["draw_period_end"].null_count() == 0
        assert set(loans["occupancy"]) == {"primary", "second_home", "investment"}
        assert 0.12 < (people["preferred_language"] == "es").mean() < 0.28
        flagged = {
            flag: (people[flag] == "true").sum()
            for flag in ("bankruptcy", "cease_communication", "deceased")
        }
        assert flagged == {
            "bankruptcy": 39,
            "cease_communication": 23,
            "deceased": 5,
        }  # of 1,481 borrowers
        assert people["last_name"].str.contains("'").any()
        assert people["last_name"].str.contains("ñ|Ñ|á|é|í|ó|ú|Å").any()

    def test_behaviours_occur(self, folder):
        """Each payment behaviour is assigned, and its traces are in the ledger."""
        out, summary = folder
        assert {b: summary.behaviours[b] for b in BEHAVIOURS} == {
            "on_time": 860,
            "late": 156,
            "partial": 130,
            "paid_ahead": 59,
            "nsf": 107,
            "stopped": 115,
            "rolling": 73,
        }
        ledger = pl.concat(
            [pl.read_csv(p, infer_schema=False) for p in (out / "payments").iterdir()]
        )
        reversals = ledger.filter(pl.col("txn_type") == "reversal")
        assert (
            reversals.height == summary.reversals == 425
            and (reversals["return_reason"] == "NSF").all()
        )
        targets = ledger.join(
            reversals.select(
                pl.col("reverses_txn_id").alias("txn_id"), pl.col("loan_id").alias("rev_loan")
            ),
            on="txn_id",
        )
        assert (
            targets.height == reversals.height and (targets["loan_id"] == targets["rev_loan"]).all()
        )
        assert ledger["txn_id"].n_unique() == ledger.height
        changes = pl.read_csv(out / "payment_changes.csv", infer_schema=False)
        assert changes.height == summary.payment_changes == 149
        senior = pl.read_csv(out / "senior_liens.csv", infer_schema=False)
        assert (senior["senior_days_past_due"].cast(pl.Int64) >= 30).any()
        cases = pl.read_csv(out / "loss_mit.csv", infer_schema=False)
        assert set(cases["status"]) == {"open", "closed"}
