"""Early warning: each signal fires on its figures (and its near miss does not), tiers, queue."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal as D

import polars as pl
import pytest

from tests.helpers import POLICY, features
from transforms.flags import Policy, risk_flags, signals

AS_OF = date(2026, 11, 20)


def signals_of(**overrides) -> list[str]:
    return signals(features(overrides), POLICY)["signal"].to_list()


class TestSignals:
    @pytest.mark.parametrize(
        ("signal", "fires", "near_miss"),
        [
            ("senior_lien_delinquent", {"senior_days_past_due": 30}, {"senior_days_past_due": 29}),
            (
                "returned_payment",
                {"returns_in_window": 1, "last_return_date": date(2026, 9, 1)},
                {"returns_in_window": 0},
            ),
            (
                "partial_or_suspense",
                {"suspense_amount": D("0.01"), "amount_past_due": D("399.99")},
                {"suspense_amount": D("0.00"), "amount_past_due": D("400.00")},
            ),
            (
                "partial_or_suspense",
                {"last_payment_short": True, "amount_past_due": D("50.00")},
                {"last_payment_short": False, "amount_past_due": D("50.00")},
            ),
            (
                "partial_or_suspense",
                {"suspense_amount": D("200.00"), "amount_past_due": D("0.01")},
                {"suspense_amount": D("200.00"), "amount_past_due": D("0.00")},
            ),
            (
                "payment_shock",
                {"next_change_amount": D("480.00"), "next_change_date": date(2027, 1, 1)},
                {"next_change_amount": D("479.99"), "next_change_date": date(2027, 1, 1)},
            ),
            ("paying_later", {"days_late": [3, 9, 20]}, {"days_late": [3, 9, 9]}),
            ("paying_later", {"days_late": [16, 0, 17]}, {"days_late": [15, 0, 15]}),
            (
                "underwater",
                {"senior_lien_balance": D("350000.01")},
                {"senior_lien_balance": D("350000.00")},
            ),
            (
                "worsening_bucket",
                {"bucket": "1-29", "days_past_due": 3, "prior_bucket": "current"},
                {"bucket": "1-29", "days_past_due": 3, "prior_bucket": "1-29"},
            ),
            (
                "early_delinquency",
                {"days_past_due": 1, "bucket": "1-29", "prior_bucket": "1-29"},
                {"days_past_due": 0},
            ),
        ],
    )
    def test_signal_and_near_miss(self, signal, fires, near_miss):
        """The signal fires at its threshold and not just below it."""
        assert signal in signals_of(**fires)
        assert signal not in signals_of(**near_miss)

    def test_quiet_loan_has_no_signal(self):
        """A current second lien with nothing unusual raises nothing."""
        assert signals_of() == []

    def test_unknown_prior_bucket_is_not_worsening(self):
        """A loan with no month-end history yet does not count as worsening."""
        assert "worsening_bucket" not in signals_of(
            prior_bucket=None, days_past_due=5, bucket="1-29"
        )

    def test_details_carry_the_figures(self):
        """The reason text shows the figures an analyst can check."""
        detail = signals(features({"senior_days_past_due": 62}), POLICY)["detail"][0]
        assert "62 days past due" in detail and "2026-10-31" in detail
        detail = signals(features({"senior_lien_balance": D("1000000.00")}), POLICY)["detail"][0]
        assert "$1,000,000.00" in detail and "$50,000.00" in detail and "263%" in detail


class TestTiers:
    @pytest.mark.parametrize(
        ("dpd", "tier"),
        [
            (16, "early_warning"),
            (29, "early_warning"),
            (30, "delinquent"),
            (59, "delinquent"),
            (60, "imminent_default"),
            (89, "imminent_default"),
            (90, "default"),
            (400, "default"),
        ],
    )
    def test_tier_from_days_past_due(self, dpd, tier):
        """The tier follows the contract's day boundaries (below 30 days, past the grace period)."""
        frame = features({"days_past_due": dpd, "bucket": "1-29", "prior_bucket": "1-29"})
        assert risk_flags(frame, signals(frame, POLICY), AS_OF, POLICY)["tier"].to_list() == [tier]

    def test_current_without_signal_not_flagged_with_signal_flagged(self):
        """A current loan is flagged early_warning only when a warning signal is present."""
        frame = features({}, {"senior_days_past_due": 45})
        flags = risk_flags(frame, signals(frame, POLICY), AS_OF, POLICY)
        assert flags["loan_id"].to_list() == ["L1"]
        assert flags["reasons"].to_list() == [["senior_lien_delinquent"]]
        assert flags["risk_model"].to_list() == ["rules"] and flags["risk"].to_list() == [None]

    @pytest.mark.parametrize("dpd", [1, 8, 15])
    def test_inside_the_grace_period_with_nothing_else_wrong_is_not_flagged(self, dpd):
        """A few days late inside the grace period, even with a bucket that moved from
        current to 1-29, is a late fee's business, not a warning."""
        frame = features({"days_past_due": dpd, "bucket": "1-29", "prior_bucket": "current"})
        assert signals(frame, POLICY)["signal"].to_list() == [
            "worsening_bucket",
            "early_delinquency",
        ]
        assert risk_flags(frame, signals(frame, POLICY), AS_OF, POLICY).is_empty()

    def test_a_current_loan_only_underwater_is_not_flagged(self):
        """Being underwater alone does not flag a current borrower; it is shown as a reason
        when something else does."""
        underwater = {"property_value": D("100000.00"), "senior_lien_balance": D("150000.00")}
        frame = features(
            underwater,
            {**underwater, "returns_in_window": 1, "last_return_date": date(2026, 11, 1)},
        )
        flags = risk_flags(frame, signals(frame, POLICY), AS_OF, POLICY)
        assert flags["loan_id"].to_list() == ["L1"]
        assert flags["reasons"].to_list() == [["returned_payment", "underwater"]]

    def test_first_liens_are_never_flagged(self):
        """Only second liens are flagged, however far behind a first lien is."""
        frame = features({"lien_position": 1, "days_past_due": 95})
        assert risk_flags(frame, signals(frame, POLICY), AS_OF, POLICY).is_empty()

    def test_care_flags(self):
        """Bankruptcy, deceased, cease, open loss mitigation and non-primary occupancy are carried."""
        frame = features(
            {"days_past_due": 40, "bankruptcy": True, "occupancy": "investment"},
            {"days_past_due": 40, "deceased": True, "open_loss_mitigation": True},
        )
        care = (
            risk_flags(frame, signals(frame, POLICY), AS_OF, POLICY)
            .sort("loan_id")["care"]
            .to_list()
        )
        assert care == [
            ["bankruptcy", "not_principal_residence"],
            ["deceased", "open_loss_mitigation"],
        ]


class TestQueue:
    def test_early_outreach_by_tier_then_score_then_the_default_list(self):
        """Under the rules the early-outreach queue (below 90 days) comes first, worse tiers
        first and the higher score first within a tier; the default list (90+) after it,
        the most recently defaulted first, outside the review capacity."""
        frame = features(
            {"days_past_due": 20, "bucket": "1-29", "prior_bucket": "1-29"},
            {
                "days_past_due": 20,
                "bucket": "1-29",
                "prior_bucket": "1-29",
                "senior_days_past_due": 60,
            },
            {"days_past_due": 95, "bucket": "90-119", "prior_bucket": "90-119"},
            {"days_past_due": 35, "bucket": "30-59", "prior_bucket": "30-59"},
            {"days_past_due": 400, "bucket": "180+", "prior_bucket": "180+"},
        )
        flags = risk_flags(frame, signals(frame, POLICY), AS_OF, POLICY)
        assert flags["loan_id"].to_list() == ["L3", "L1", "L0", "L2", "L4"]
        assert flags["queue"].to_list() == ["early_outreach"] * 3 + ["default"] * 2
        assert flags["queue_rank"].to_list() == [1, 2, 3, 4, 5]
        assert flags["in_queue"].to_list() == [True, True, True, False, False]
        assert flags.filter(pl.col("loan_id") == "L1")["score"][0] == D("50.00")

    def test_capacity_cuts_but_keeps(self):
        """Beyond the review capacity loans stay in the table, marked out of the queue."""
        frame = features(
            *[{"days_past_due": d, "bucket": "1-29", "prior_bucket": "1-29"} for d in (17, 19, 27)]
        )
        policy = Policy(weights=POLICY.weights, review_capacity=2)
        flags = risk_flags(frame, signals(frame, policy), AS_OF, policy)
        assert flags.height == 3
        assert flags["in_queue"].to_list() == [True, True, False]

    def test_with_a_model_risk_decides_and_expected_loss_orders(self):
        """With a model's scores, a loan below 30 days is flagged at or above the threshold
        whatever the rules say, and the queue is ordered by expected loss."""
        frame = features(
            {"days_past_due": 0},
            {"days_past_due": 20, "bucket": "1-29", "prior_bucket": "1-29"},
            {"days_past_due": 0, "senior_days_past_due": 60},
            {"days_past_due": 45, "bucket": "30-59", "prior_bucket": "30-59"},
        )
        scored = pl.DataFrame(
            {
                "loan_id": ["L0", "L1", "L2", "L3"],
                "risk": [0.30, 0.01, 0.05, 0.60],
                "expected_loss": [9000.0, 300.0, 1500.0, 6000.0],
                "reasons": [["paying_later"], None, None, ["early_delinquency"]],
                "reason_details": [["paid later and later"], None, None, ["45 days past due"]],
            }
        )
        policy = Policy(weights=POLICY.weights, flag_threshold=0.10, model="gbm-x")
        flags = risk_flags(frame, signals(frame, policy), AS_OF, policy, scored)
        assert flags["loan_id"].to_list() == ["L0", "L3"]
        assert flags["tier"].to_list() == ["early_warning", "delinquent"]
        assert flags["risk"].to_list() == [0.30, 0.60]
        assert flags["risk_model"].to_list() == ["gbm-x", "gbm-x"]
        assert flags["reasons"].to_list() == [["paying_later"], ["early_delinquency"]]


class TestLateness:
    """Days late of the last three installments, from the real ledger SQL and the engine."""

    def lateness_of(
        self, tmp_path, payments: list[tuple], as_of: date, change: tuple | None = None
    ) -> list[int]:
        from lienwatch.sql import query
        from lienwatch.steps.flags import LATENESS_WINDOW_DAYS
        from lienwatch.warehouse import connect
        from transforms.delinquency import loan_status
        from transforms.flags import keyed_events_sql, lateness

        con = connect(tmp_path / "wh.duckdb")
        con.execute(
            """INSERT INTO loans (loan_id, borrower_id, lien_position, product, origination_date,
                first_payment_date, scheduled_payment, term_months, interest_rate, original_balance,
                current_balance, property_state, occupancy, status, load_id)
            VALUES ('L1', 'B1', 2, 'closed_end', DATE '2024-01-01', DATE '2024-02-01', 100.00, 120,
                    8.0, 9000.00, 8000.00, 'CA', 'primary', 'active', 1)"""
        )
        if change:
            con.execute(
                "INSERT INTO payment_changes VALUES ('L1', $d, $a, 1)",
                {"d": change[0], "a": change[1]},
            )
        for i, (day, amount, kind, target) in enumerate(payments):
            con.execute(
                "INSERT INTO payments VALUES ($id, 'L1', $d, $a, $k, $t, NULL, 'f', $i, 1)",
                {"id": f"T{i}", "d": day, "a": amount, "k": kind, "t": target, "i": i},
            )
        loans = con.sql("SELECT * EXCLUDE (load_id) FROM loans").pl()
        changes = con.sql(
            "SELECT loan_id, effective_due_date, scheduled_payment FROM payment_changes"
        ).pl()
        status = loan_status(
            loans, changes, con.sql(query("net_paid"), params={"as_of": as_of}).pl(), as_of
        )
        con.register("_keys", status.select("loan_id").with_row_index("_key").to_arrow())
        found = {}
        for days in (LATENESS_WINDOW_DAYS, 400):
            params = {"as_of": as_of, "window_days": days}
            window = con.sql(query("ledger_events"), params=params).pl()
            keyed = con.sql(keyed_events_sql(query("ledger_events"), "_keys"), params=params).pl()
            found[days] = lateness(loans, changes, window, status, as_of, days)
            # the night's form: the same moves keyed to the status rows in the query
            assert lateness(loans, changes, keyed, status, as_of, days).equals(found[days])
        con.close()
        # the night's window starts before the oldest of the last three due dates: reading
        # more of the ledger changes nothing
        assert found[LATENESS_WINDOW_DAYS].equals(found[400])
        found = found[400]
        return found["days_late"].to_list()[0]

    def test_drifting_payer(self, tmp_path):
        """Payments 3, 9 and 20 days after due read as [3, 9, 20]."""
        pays = [
            (date(2024, 2, 1), 100, "payment", None),
            (date(2024, 3, 1), 100, "payment", None),
            (date(2024, 4, 4), 100, "payment", None),
            (date(2024, 5, 10), 100, "payment", None),
            (date(2024, 6, 21), 100, "payment", None),
        ]
        assert self.lateness_of(tmp_path, pays, date(2024, 6, 25)) == [3, 9, 20]

    def test_unpaid_counts_to_tonight_and_reversal_undoes(self, tmp_path):
        """A reversed payment leaves its installment unpaid until paid again."""
        pays = [
            (date(2024, 2, 1), 100, "payment", None),
            (date(2024, 3, 1), 100, "payment", None),
            (date(2024, 4, 1), 100, "payment", None),
            (date(2024, 4, 8), 100, "reversal", "T2"),
            (date(2024, 4, 20), 100, "payment", None),
        ]
        # Installments due Apr 1 (paid Apr 1, reversed Apr 8, paid again Apr 20), May 1 and
        # Jun 1 (both unpaid on Jun 10).
        assert self.lateness_of(tmp_path, pays, date(2024, 6, 10)) == [19, 40, 9]

    def test_payment_change_among_the_last_installments(self, tmp_path):
        """A payment rise among the last three installments is followed exactly (engine path)."""
        pays = [
            (date(2024, 2, 1), 100, "payment", None),
            (date(2024, 3, 1), 100, "payment", None),
            (date(2024, 4, 3), 100, "payment", None),
            (date(2024, 5, 10), 150, "payment", None),
            (date(2024, 6, 20), 100, "payment", None),
            (date(2024, 6, 24), 50, "payment", None),
        ]
        assert self.lateness_of(
            tmp_path, pays, date(2024, 6, 25), change=(date(2024, 5, 1), 150)
        ) == [2, 9, 23]

    def test_paid_ahead_is_never_late(self, tmp_path):
        """An installment covered before its due date by a double payment is 0 days late."""
        pays = [
            (date(2024, 2, 1), 200, "payment", None),
            (date(2024, 4, 1), 100, "payment", None),
            (date(2024, 5, 2), 100, "payment", None),
        ]
        assert self.lateness_of(tmp_path, pays, date(2024, 5, 5)) == [0, 0, 1]


# Net paid at the end of each day, the whole ledger read: what net_paid_by_day must match.
FULL_HISTORY_EVENTS = """
WITH loans_watched AS (SELECT loan_id FROM loans WHERE lien_position = 2 AND status = 'active'),
window_start AS (SELECT CAST($as_of AS DATE) - CAST($window_days AS INTEGER) AS start_date),
paid AS (
    SELECT p.txn_id, p.loan_id, p.posted_date, p.amount
    FROM payments AS p JOIN loans_watched USING (loan_id)
    WHERE p.txn_type = 'payment' AND p.posted_date <= $as_of
),
reversed AS (
    SELECT reverses_txn_id AS txn_id, min(posted_date) AS reversed_date FROM payments
    WHERE txn_type = 'reversal' AND posted_date <= $as_of AND reverses_txn_id IS NOT NULL
    GROUP BY reverses_txn_id
),
deltas AS (
    SELECT loan_id, posted_date AS event_date, amount AS delta FROM paid
    UNION ALL
    SELECT paid.loan_id, greatest(paid.posted_date, reversed.reversed_date), -paid.amount
    FROM paid JOIN reversed USING (txn_id)
),
opening AS (
    SELECT loans_watched.loan_id, w.start_date AS event_date,
           coalesce(sum(d.delta) FILTER (WHERE d.event_date <= w.start_date), 0) AS delta
    FROM loans_watched CROSS JOIN window_start AS w LEFT JOIN deltas AS d USING (loan_id)
    GROUP BY loans_watched.loan_id, w.start_date
),
daily AS (
    SELECT d.loan_id, d.event_date, sum(d.delta) AS delta FROM deltas AS d, window_start AS w
    WHERE d.event_date > w.start_date GROUP BY d.loan_id, d.event_date
    UNION ALL SELECT loan_id, event_date, delta FROM opening
)
SELECT loan_id, event_date AS as_of_date,
       CAST(sum(delta) OVER (PARTITION BY loan_id ORDER BY event_date) AS DECIMAL(18, 2)) AS net_paid
FROM daily
"""


class TestNetPaidByDay:
    """The window's changes with net paid tonight give the same daily figures as the whole ledger."""

    LOANS = (
        ("A", 2, "active"),
        ("B", 2, "active"),
        ("C", 2, "active"),
        ("D", 2, "paid_off"),
        ("E", 1, "active"),
        ("F", 2, "active"),
    )
    # (txn_id, loan_id, posted_date, amount, txn_type, reverses_txn_id): payments long before
    # the window, reversed before it, in it, after the night, twice; a reversal dated before
    # its payment; a reversal on another loan's payment; one naming nothing; same-day pairs.
    LEDGER = (
        ("A1", "A", date(2023, 1, 5), "100.00", "payment", None),
        ("A2", "A", date(2023, 6, 5), "100.00", "payment", None),
        ("A3", "A", date(2024, 1, 5), "100.00", "payment", None),
        ("A4", "A", date(2024, 3, 5), "120.50", "payment", None),
        ("A5", "A", date(2024, 5, 5), "100.00", "payment", None),
        ("A6", "A", date(2024, 5, 5), "40.00", "payment", None),
        ("RA1", "A", date(2023, 1, 9), "100.00", "reversal", "A1"),
        ("RA2", "A", date(2024, 4, 1), "100.00", "reversal", "A2"),
        ("RA3", "A", date(2024, 7, 1), "100.00", "reversal", "A3"),
        ("RA4a", "A", date(2024, 3, 9), "120.50", "reversal", "A4"),
        ("RA4b", "A", date(2024, 3, 20), "120.50", "reversal", "A4"),
        ("RA5", "A", date(2024, 5, 5), "100.00", "reversal", "A5"),
        ("B1", "B", date(2024, 2, 1), "75.25", "payment", None),
        ("B2", "B", date(2024, 4, 2), "75.25", "payment", None),
        ("RB2", "B", date(2024, 3, 30), "75.25", "reversal", "B2"),
        ("RC", "C", date(2024, 4, 10), "75.25", "reversal", "B1"),
        ("RX", "C", date(2024, 4, 11), "10.00", "reversal", "nothing"),
        ("C1", "C", date(2022, 1, 1), "500.00", "payment", None),
        ("D1", "D", date(2024, 4, 1), "100.00", "payment", None),
        ("E1", "E", date(2024, 4, 1), "100.00", "payment", None),
    )

    @pytest.fixture
    def con(self, tmp_path):
        from lienwatch.warehouse import connect

        con = connect(tmp_path / "wh.duckdb")
        for loan_id, lien, status in self.LOANS:
            con.execute(
                """INSERT INTO loans (loan_id, borrower_id, lien_position, product, origination_date,
                    first_payment_date, scheduled_payment, term_months, interest_rate, original_balance,
                    current_balance, property_state, occupancy, status, load_id)
                VALUES ($l, 'B1', $p, 'closed_end', DATE '2022-01-01', DATE '2022-02-01', 100.00, 120,
                        8.0, 9000.00, 8000.00, 'CA', 'primary', $s, 1)""",
                {"l": loan_id, "p": lien, "s": status},
            )
        for i, (txn, loan_id, day, amount, kind, target) in enumerate(self.LEDGER):
            con.execute(
                "INSERT INTO payments VALUES ($id, $l, $d, $a, $k, $t, NULL, 'f', $i, 1)",
                {"id": txn, "l": loan_id, "d": day, "a": D(amount), "k": kind, "t": target, "i": i},
            )
        yield con
        con.close()

    @pytest.mark.parametrize(
        "as_of",
        [
            date(2024, 3, 31),
            date(2024, 5, 5),
            date(2024, 6, 30),
            date(2024, 7, 1),
            date(2024, 9, 1),
        ],
    )
    @pytest.mark.parametrize("window_days", [30, 150])
    def test_matches_the_whole_ledger(self, con, as_of, window_days):
        from lienwatch.sql import query
        from transforms.delinquency import loan_status
        from transforms.flags import net_paid_by_day

        loans = con.sql("SELECT * EXCLUDE (load_id) FROM loans").pl()
        changes = con.sql(
            "SELECT loan_id, effective_due_date, scheduled_payment FROM payment_changes"
        ).pl()
        status = loan_status(
            loans, changes, con.sql(query("net_paid"), params={"as_of": as_of}).pl(), as_of
        )
        params = {"as_of": as_of, "window_days": window_days}
        window = con.sql(query("ledger_events"), params=params).pl()
        got = net_paid_by_day(window, status, loans, as_of, window_days).sort(
            "loan_id", "as_of_date"
        )
        expected = con.sql(FULL_HISTORY_EVENTS, params=params).pl().sort("loan_id", "as_of_date")
        assert got.schema == expected.schema
        assert got.to_dicts() == expected.to_dicts()
        assert set(got["loan_id"]) == {"A", "B", "C", "F"}


class TestFloorsAndSearch:
    """The running floor per loan and the first day at or above a need, against a plain loop
    (also where the figures are too large for the one-number shortcut)."""

    @pytest.mark.parametrize("scale", [1, 2**58])
    def test_against_a_loop(self, scale):
        import random

        from transforms.flags import _first_day_at_or_above, _floors

        rng = random.Random(scale)
        rows = [
            (key, day, rng.randint(-5, 20) * scale)
            for key in range(0, 40, 3)
            for day in sorted(rng.sample(range(0, 150), rng.randint(1, 6)))
        ]
        levels = pl.DataFrame(
            rows, schema={"_key": pl.UInt32, "_day": pl.Int64, "_level": pl.Int64}, orient="row"
        )
        floors = _floors(levels)
        expected = [min(lv for k, d, lv in rows if k == key and d >= day) for key, day, _ in rows]
        assert floors["_floor"].to_list() == expected
        needs = pl.DataFrame(
            [(key, j, rng.randint(-6, 22) * scale) for key in range(0, 42) for j in range(3)],
            schema={"_key": pl.UInt32, "j": pl.Int32, "_need": pl.Int64},
            orient="row",
        )
        got = _first_day_at_or_above(floors, needs, date(2024, 1, 1))
        for (key, j, need), (got_key, got_j, paid) in zip(needs.rows(), got.rows(), strict=True):
            days = [
                d for (k, d, _), f in zip(rows, expected, strict=True) if k == key and f >= need
            ]
            assert (got_key, got_j) == (key, j)
            assert paid == (date(2024, 1, 1) + timedelta(days=days[0]) if days else None)


class TestAlign:
    """A per-loan frame put row for row with the status: each key's row, nulls where the
    frame has none, and a repeated key refused (it would double a loan's figures)."""

    KEYS = pl.Series(["L3", "L1", "L9", "L2"])

    def test_rows_follow_the_keys(self):
        from transforms.flags import align

        frame = pl.DataFrame({"loan_id": ["L1", "L2", "L3", "L4"], "bucket": ["a", "b", "c", "d"]})
        got = align(self.KEYS, frame)
        assert got.rows() == [("L3", "c"), ("L1", "a"), ("L9", None), ("L2", "b")]

    def test_a_repeated_key_is_refused(self):
        from transforms.flags import align

        frame = pl.DataFrame({"loan_id": ["L1", "L1", "L2"], "bucket": ["a", "b", "c"]})
        with pytest.raises(ValueError, match="loan_id repeats"):
            align(self.KEYS, frame)

    def test_a_shared_hash_falls_back_to_the_text(self, monkeypatch):
        """Were two loan ids to share a hash, the rows still match by the text."""
        from transforms.flags import align

        monkeypatch.setattr(pl.Expr, "hash", lambda self, seed=0: pl.lit(7, dtype=pl.UInt64))
        frame = pl.DataFrame({"loan_id": ["L2", "L3"], "bucket": ["b", "c"]})
        assert align(self.KEYS, frame).rows() == [
            ("L3", "c"),
            ("L1", None),
            ("L9", None),
            ("L2", "b"),
        ]
