"""Backtest arithmetic: outcomes over the follow-up window, precision, recall and lift."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from transforms.backtest import RULE_GROUPS, add_months, groups, outcomes, rule_members, summarise

M = date(2025, 1, 31)


def history(rows: list[tuple[str, date, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {"loan_id": loan, "as_of_date": day, "days_past_due": dpd, "lien_position": 2}
            for loan, day, dpd in rows
        ]
    )


class TestOutcomes:
    def test_add_months_lands_on_month_ends(self):
        """Month arithmetic keeps to month ends, February included."""
        assert add_months(date(2025, 1, 31), 1) == date(2025, 2, 28)
        assert add_months(date(2023, 11, 30), 3) == date(2024, 2, 29)

    def test_went_bad_within_horizon_only(self):
        """90+ within six months counts; later, or already 90+ at the start, does not."""
        h = history(
            [
                ("A", M, 10),
                ("A", add_months(M, 3), 95),
                ("B", M, 0),
                ("B", add_months(M, 7), 120),
                ("C", M, 100),
                ("D", M, 40),
                ("D", add_months(M, 6), 89),
            ]
        )
        result = dict(outcomes(h, M).iter_rows())
        assert result == {"A": True, "B": False, "D": False}


class TestSummary:
    def test_precision_recall_lift(self):
        """Two of three flagged went bad, one of seven unflagged: precision 2/3, lift 2/3 over 3/10."""
        outcome = pl.DataFrame(
            {
                "loan_id": [f"L{i}" for i in range(10)],
                "went_bad": [True, True, False, True] + [False] * 6,
            }
        )
        flagged = pl.DataFrame({"loan_id": ["L0", "L1", "L2"], "tier": ["early_warning"] * 3})
        found = pl.DataFrame({"loan_id": ["L0"], "signal": ["returned_payment"]})
        table = summarise(groups(M, rule_members(found, flagged), outcome, RULE_GROUPS))
        row = table.filter(pl.col("group") == "any flag").row(0, named=True)
        assert (row["flagged"], row["flagged_bad"], row["unflagged"], row["unflagged_bad"]) == (
            3,
            2,
            7,
            1,
        )
        assert row["precision"] == pytest.approx(2 / 3)
        assert row["recall"] == pytest.approx(2 / 3)
        assert row["lift"] == pytest.approx((2 / 3) / 0.3)
        empty = table.filter(pl.col("group") == "signal: underwater").row(0, named=True)
        assert empty["flagged"] == 0 and empty["precision"] is None
