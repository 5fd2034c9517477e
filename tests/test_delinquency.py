"""Delinquency: each contract rule on small hand-checked ledgers, through the real SQL.

Every figure below was worked out by hand from the rules in ``docs/contract.md``.
The scenarios, one loan each unless said otherwise:

| test | what it exercises |
|---|---|
| TestDueDates | due on the 29th/30th/31st across February 2024 (leap) and 2023 |
| TestPaymentApplication.test_cfpb_example | Reg X comment 31-2: Jan missed, paid Feb 3, 3 days late on Feb 4 |
| TestPaymentApplication.test_missed_month_end_due_date | Jan 31 missed: 29 then 30 days on Feb 29 / Mar 1 2024 |
| TestPaymentApplication partial/ahead/none | partials adding up, paid ahead, no payments |
| TestReversals | reversal before/after as-of, of a later payment, twice, orphan |
| TestPaymentChanges | amounts change from the installment due on the effective date |
| TestTolerance | $0.50 short: current with 1.00 tolerance, past due with 0 |
| TestSchedule | before the first due date, on the due date, after the term |
| TestBuckets / TestMetro2 | every bucket and Metro 2 boundary (29/30 ... 179/180) |
| TestMilestones | Reg X live contact, written notice, default, past-120 dates |
| TestPopulation | only active loans; originated later; missing from net paid |
| TestHistory, TestBucketTransitions, TestCurrentDelinquencyStart, TestRollRates | month ends |
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import date, timedelta
from decimal import Decimal as D

import duckdb
import polars as pl
import pytest

from lienwatch.sql import query
from tests.helpers import changes_frame, ledger, loans_frame, net_paid
from transforms.contract import BUCKETS
from transforms.delinquency import (
    STATUS_COLUMNS,
    bucket_of,
    bucket_transitions,
    current_delinquency_start,
    delinquency_start_tail,
    due_date,
    loan_status,
    loan_status_history,
    roll_rates,
    spell_tail,
)

# --------------------------------------------------------------------------- builders

_ids = itertools.count(1)


def pay(loan_id: str, posted: date, amount: str, txn_id: str | None = None) -> tuple:
    """A payment row of the ledger."""
    return (txn_id or f"P{next(_ids)}", loan_id, posted, D(amount), "payment", None)


def reverse(payment: tuple, posted: date) -> tuple:
    """A reversal (returned payment) of ``payment``, posted on ``posted``."""
    return (f"R{next(_ids)}", payment[1], posted, payment[3], "reversal", payment[0])


def loan(
    loan_id: str = "L",
    first: date = date(2024, 1, 1),
    payment: str = "100.00",
    term: int = 360,
    status: str = "active",
    lien: int = 2,
    originated: date | None = None,
    balance: str = "10000.00",
) -> dict:
    """One loan master row (contract columns used by the engine)."""
    return dict(
        loan_id=loan_id,
        borrower_id=f"B-{loan_id}",
        lien_position=lien,
        product="closed_end",
        origination_date=originated or first - timedelta(days=30),
        first_payment_date=first,
        scheduled_payment=D(payment),
        term_months=term,
        current_balance=D(balance),
        status=status,
    )


def status(
    loans: list[dict] | dict,
    rows: Iterable[tuple],
    as_of: date,
    changes: Iterable[tuple] = (),
    tolerance: D = D("0"),
) -> pl.DataFrame:
    """loan_status over a ledger of ``rows``, through the real SQL."""
    loans = [loans] if isinstance(loans, dict) else loans
    con = ledger(rows)
    return loan_status(
        loans_frame(*loans), changes_frame(*changes), net_paid(con, as_of), as_of, tolerance
    )


def one(loan_row: dict, rows: Iterable[tuple], as_of: date, **kwargs) -> dict:
    """The status row of a single loan."""
    frame = status(loan_row, rows, as_of, **kwargs)
    assert frame.height == 1
    return frame.row(0, named=True)


# --------------------------------------------------------------------------- SQL


class TestNetPaidSql:
    def test_sql_reads_the_file(self):
        """query(name) returns the text of lienwatch/sql/<name>.sql."""
        assert "final" in query("net_paid") and "$as_of" in query("net_paid")
        assert "$from_date" in query("net_paid_month_ends")

    def test_payments_on_or_before_as_of(self):
        """Only payments posted on or before the as-of date count; the date itself counts."""
        con = ledger([pay("A", date(2024, 1, 5), "10.00"), pay("A", date(2024, 1, 6), "20.00")])
        row = net_paid(con, date(2024, 1, 5)).row(0, named=True)
        assert (row["net_paid"], row["payment_count"], row["last_payment_date"]) == (
            D("10.00"),
            1,
            date(2024, 1, 5),
        )

    def test_reversal_posted_after_as_of_does_not_count_yet(self):
        """A payment reversed after the as-of date still counts as of that date."""
        p = pay("A", date(2024, 1, 5), "100.00")
        con = ledger([p, reverse(p, date(2024, 1, 20))])
        assert net_paid(con, date(2024, 1, 19))["net_paid"].to_list() == [D("100.00")]
        row = net_paid(con, date(2024, 1, 20)).row(0, named=True)
        assert (
            row["net_paid"],
            row["gross_paid"],
            row["reversed_amount"],
            row["reversal_count"],
            row["last_reversal_date"],
        ) == (D("0.00"), D("100.00"), D("100.00"), 1, date(2024, 1, 20))

    def test_reversal_of_a_payment_posted_after_as_of_is_ignored(self):
        """A reversal counts only once the payment it names is posted: net paid never drops below zero."""
        p = pay("A", date(2024, 2, 10), "100.00")
        early = reverse(p, date(2024, 2, 1))  # dated before its payment (a feed error)
        con = ledger([pay("A", date(2024, 1, 5), "50.00"), p, early])
        assert net_paid(con, date(2024, 2, 5))["net_paid"].to_list() == [D("50.00")]
        assert net_paid(con, date(2024, 2, 10))["net_paid"].to_list() == [D("50.00")]

    def test_payment_reversed_twice_is_undone_once(self):
        """Two reversals of one payment take its amount off once."""
        p = pay("A", date(2024, 1, 5), "100.00")
        con = ledger(
            [
                p,
                pay("A", date(2024, 1, 6), "30.00"),
                reverse(p, date(2024, 1, 7)),
                reverse(p, date(2024, 1, 8)),
            ]
        )
        row = net_paid(con, date(2024, 1, 31)).row(0, named=True)
        assert (row["net_paid"], row["reversal_count"], row["last_reversal_date"]) == (
            D("30.00"),
            1,
            date(2024, 1, 7),
        )

    def test_reversal_naming_no_payment_is_ignored(self):
        """A reversal of a txn_id the ledger does not hold changes nothing."""
        con = ledger(
            [
                pay("A", date(2024, 1, 5), "100.00"),
                ("R-x", "A", date(2024, 1, 6), D("100.00"), "reversal", "nope"),
            ]
        )
        assert net_paid(con, date(2024, 1, 31))["net_paid"].to_list() == [D("100.00")]

    def test_last_payment_date_counts_reversed_payments(self):
        """last_payment_date is the latest payment posted, even when it was returned."""
        p = pay("A", date(2024, 2, 5), "70.00")
        con = ledger([pay("A", date(2024, 1, 5), "100.00"), p, reverse(p, date(2024, 2, 9))])
        row = net_paid(con, date(2024, 3, 1)).row(0, named=True)
        assert (row["last_payment_date"], row["payment_count"], row["reversal_count"]) == (
            date(2024, 2, 5),
            2,
            1,
        )


class TestNetPaidMonthEndsSql:
    @pytest.fixture
    def con(self) -> duckdb.DuckDBPyConnection:
        p1 = pay("A", date(2023, 12, 20), "100.00")
        p2 = pay("A", date(2024, 2, 5), "100.00")
        p3 = pay("B", date(2024, 3, 31), "40.00")
        p4 = pay("B", date(2024, 5, 2), "60.00")
        return ledger(
            [
                p1,
                p2,
                reverse(p2, date(2024, 3, 2)),
                p3,
                p4,
                reverse(p4, date(2024, 4, 30)),
                pay("C", date(2024, 7, 1), "1.00"),
            ]
        )

    def test_same_figures_as_net_paid_at_each_month_end(self, con):
        """At every month end, the running rollup equals net_paid.sql run for that date."""
        running = con.sql(
            query("net_paid_month_ends"),
            params={"from_date": date(2024, 1, 1), "to_date": date(2024, 6, 30)},
        ).pl()
        month_ends = sorted(running["as_of_date"].unique().to_list())
        assert month_ends == [
            date(2024, 1, 31),
            date(2024, 2, 29),
            date(2024, 3, 31),
            date(2024, 4, 30),
            date(2024, 5, 31),
            date(2024, 6, 30),
        ]
        columns = [
            "loan_id",
            "net_paid",
            "gross_paid",
            "reversed_amount",
            "payment_count",
            "reversal_count",
            "last_payment_date",
            "last_reversal_date",
        ]
        for month_end in month_ends:
            expected = net_paid(con, month_end).select(columns).sort("loan_id")
            got = running.filter(pl.col("as_of_date") == month_end).select(columns).sort("loan_id")
            assert got.to_dicts() == expected.to_dicts(), month_end

    def test_one_row_per_loan_per_month_end_from_first_payment(self):
        """A loan has rows from the month end after its first payment; none before, none after to_date."""
        con = ledger([pay("A", date(2024, 3, 31), "10.00")])
        running = con.sql(
            query("net_paid_month_ends"),
            params={"from_date": date(2024, 1, 31), "to_date": date(2024, 5, 30)},
        ).pl()
        assert running["as_of_date"].to_list() == [date(2024, 3, 31), date(2024, 4, 30)]

    def test_reversal_in_a_later_month_takes_the_money_off_then(self, con):
        """A payment in February reversed in March counts at the end of February only."""
        running = con.sql(
            query("net_paid_month_ends"),
            params={"from_date": date(2024, 1, 1), "to_date": date(2024, 3, 31)},
        ).pl()
        a = running.filter(pl.col("loan_id") == "A").sort("as_of_date")["net_paid"].to_list()
        assert a == [D("100.00"), D("200.00"), D("100.00")]


# --------------------------------------------------------------------------- rules


class TestDueDates:
    @pytest.mark.parametrize(
        ("first", "expected"),
        [
            (date(2024, 1, 29), [date(2024, 1, 29), date(2024, 2, 29), date(2024, 3, 29)]),
            (date(2024, 1, 30), [date(2024, 1, 30), date(2024, 2, 29), date(2024, 3, 30)]),
            (
                date(2024, 1, 31),
                [date(2024, 1, 31), date(2024, 2, 29), date(2024, 3, 31), date(2024, 4, 30)],
            ),
            (date(2023, 1, 29), [date(2023, 1, 29), date(2023, 2, 28), date(2023, 3, 29)]),
            (date(2023, 1, 30), [date(2023, 1, 30), date(2023, 2, 28), date(2023, 3, 30)]),
            (
                date(2023, 1, 31),
                [date(2023, 1, 31), date(2023, 2, 28), date(2023, 3, 31), date(2023, 4, 30)],
            ),
            (date(2023, 12, 31), [date(2023, 12, 31), date(2024, 1, 31), date(2024, 2, 29)]),
        ],
    )
    def test_same_day_or_month_end_never_chained(self, first, expected):
        """Installment k falls on first + k months, on the last day of a shorter month."""
        got = pl.select(
            due_date(pl.lit(first), pl.lit(pl.Series(range(len(expected)), dtype=pl.Int32)))
        ).to_series()
        assert got.to_list() == expected

    def test_29th_in_february_of_a_leap_and_common_year(self):
        """A loan due on the 29th: 1 day past due on Mar 1 2023 (due Feb 28), current on Feb 29 2024 paid."""
        rows = [pay("L", date(2023, 1, 29), "100.00")]
        row = one(loan(first=date(2023, 1, 29)), rows, date(2023, 3, 1))
        assert (row["oldest_unpaid_due_date"], row["days_past_due"]) == (date(2023, 2, 28), 1)
        rows = [pay("L", date(2024, 1, 29), "100.00"), pay("L", date(2024, 2, 29), "100.00")]
        row = one(loan(first=date(2024, 1, 29)), rows, date(2024, 2, 29))
        assert (row["installments_due"], row["days_past_due"], row["next_due_date"]) == (
            2,
            0,
            date(2024, 3, 29),
        )


class TestPaymentApplication:
    def test_cfpb_example(self):
        """Jan 1 missed: 30 days on Jan 31; one payment Feb 3 goes to January; 3 days on Feb 4 from Feb 1."""
        first = loan(first=date(2024, 1, 1), payment="2000.00")
        row = one(first, [], date(2024, 1, 31))
        assert (row["days_past_due"], row["bucket"], row["oldest_unpaid_due_date"]) == (
            30,
            "30-59",
            date(2024, 1, 1),
        )
        rows = [pay("L", date(2024, 2, 3), "2000.00")]
        row = one(first, rows, date(2024, 2, 4))
        assert (
            row["installments_due"],
            row["installments_paid"],
            row["oldest_unpaid_due_date"],
            row["days_past_due"],
            row["bucket"],
            row["amount_past_due"],
        ) == (2, 1, date(2024, 2, 1), 3, "1-29", D("2000.00"))

    @pytest.mark.parametrize(
        ("first", "as_of", "days", "bucket"),
        [
            (date(2024, 1, 31), date(2024, 2, 29), 29, "1-29"),
            (date(2024, 1, 31), date(2024, 3, 1), 30, "30-59"),
            (date(2023, 1, 31), date(2023, 3, 1), 29, "1-29"),
            (date(2023, 1, 31), date(2023, 3, 2), 30, "30-59"),
        ],
    )
    def test_missed_month_end_due_date(self, first, as_of, days, bucket):
        """Due Jan 31 and missed: days count from Jan 31 (leap year: 30 on Mar 1; common: on Mar 2)."""
        row = one(loan(first=first), [], as_of)
        assert (
            row["oldest_unpaid_due_date"],
            row["days_past_due"],
            row["bucket"],
            row["installments_due"],
            row["amount_past_due"],
        ) == (first, days, bucket, 2, D("200.00"))

    def test_payment_on_the_due_date(self):
        """A payment posted on the due date pays that installment the same day."""
        row = one(
            loan(first=date(2024, 1, 15)),
            [pay("L", date(2024, 1, 15), "100.00")],
            date(2024, 1, 15),
        )
        assert (
            row["installments_due"],
            row["installments_paid"],
            row["days_past_due"],
            row["oldest_unpaid_due_date"],
            row["next_due_date"],
        ) == (1, 1, 0, None, date(2024, 2, 15))

    def test_unpaid_on_the_due_date_is_zero_days_but_behind(self):
        """Unpaid on its due date: 0 days past due, 'current' (no oldest unpaid date), the amount owed shown."""
        row = one(loan(first=date(2024, 1, 15)), [], date(2024, 1, 15))
        assert (
            row["installments_paid"],
            row["oldest_unpaid_due_date"],
            row["days_past_due"],
            row["bucket"],
            row["amount_past_due"],
        ) == (0, None, 0, "current", D("100.00"))

    def test_partial_payments_add_up(self):
        """Three partials (40 + 35 + 25) complete January; until the last, the 75.00 waits in suspense."""
        rows = [pay("L", date(2024, 1, 3), "40.00"), pay("L", date(2024, 1, 10), "35.00")]
        row = one(loan(), rows, date(2024, 1, 20))
        assert (
            row["installments_paid"],
            row["days_past_due"],
            row["suspense_amount"],
            row["amount_past_due"],
        ) == (0, 19, D("75.00"), D("25.00"))
        row = one(loan(), [*rows, pay("L", date(2024, 1, 25), "25.00")], date(2024, 1, 25))
        assert (
            row["installments_paid"],
            row["days_past_due"],
            row["suspense_amount"],
            row["amount_past_due"],
        ) == (1, 0, D("0.00"), D("0.00"))

    def test_paid_ahead(self):
        """350 paid by Feb 10 with two installments due: current, 150 held as paid ahead."""
        row = one(loan(), [pay("L", date(2024, 1, 1), "350.00")], date(2024, 2, 10))
        assert (
            row["installments_due"],
            row["installments_paid"],
            row["days_past_due"],
            row["suspense_amount"],
            row["net_paid"],
            row["total_due"],
        ) == (2, 2, 0, D("150.00"), D("350.00"), D("200.00"))

    def test_paid_ahead_covers_later_due_dates(self):
        """Paid 3 months ahead in January: still current on Mar 31, with nothing more paid."""
        row = one(loan(), [pay("L", date(2024, 1, 1), "300.00")], date(2024, 3, 31))
        assert (row["installments_paid"], row["days_past_due"], row["suspense_amount"]) == (
            3,
            0,
            D("0.00"),
        )

    def test_no_payments(self):
        """A loan absent from the ledger has paid nothing: behind from its first due date."""
        row = one(loan(), [], date(2024, 3, 15))
        assert (
            row["installments_due"],
            row["installments_paid"],
            row["net_paid"],
            row["days_past_due"],
            row["amount_past_due"],
        ) == (3, 0, D("0.00"), 74, D("300.00"))


class TestReversals:
    def test_reversal_posted_before_as_of(self):
        """A returned January payment: January unpaid again from the reversal's date on."""
        p = pay("L", date(2024, 1, 2), "100.00")
        row = one(loan(), [p, reverse(p, date(2024, 1, 12))], date(2024, 1, 31))
        assert (row["net_paid"], row["installments_paid"], row["days_past_due"]) == (
            D("0.00"),
            0,
            30,
        )

    def test_reversal_posted_after_as_of(self):
        """The same ledger as of Jan 11: the reversal is not yet posted, January is paid."""
        p = pay("L", date(2024, 1, 2), "100.00")
        row = one(loan(), [p, reverse(p, date(2024, 1, 12))], date(2024, 1, 11))
        assert (row["net_paid"], row["installments_paid"], row["days_past_due"]) == (
            D("100.00"),
            1,
            0,
        )

    def test_reversal_of_a_payment_posted_after_as_of(self):
        """A reversal dated before its own payment takes nothing off before that payment posts."""
        p = pay("L", date(2024, 2, 20), "100.00")
        rows = [pay("L", date(2024, 1, 2), "100.00"), p, reverse(p, date(2024, 2, 10))]
        row = one(loan(), rows, date(2024, 2, 15))
        assert (row["net_paid"], row["installments_paid"], row["days_past_due"]) == (
            D("100.00"),
            1,
            14,
        )


class TestPaymentChanges:
    def test_amount_changes_from_the_installment_due_on_the_effective_date(self):
        """100 a month, then 150 from the Mar 1 installment: 350 due by Mar 31; 300 paid leaves March short."""
        rows = [
            pay("L", date(2024, 1, 1), "100.00"),
            pay("L", date(2024, 2, 1), "100.00"),
            pay("L", date(2024, 3, 1), "100.00"),
        ]
        row = one(loan(), rows, date(2024, 3, 31), changes=[("L", date(2024, 3, 1), "150.00")])
        assert (
            row["total_due"],
            row["installments_paid"],
            row["oldest_unpaid_due_date"],
            row["days_past_due"],
            row["amount_past_due"],
            row["suspense_amount"],
            row["installment_amount"],
        ) == (D("350.00"), 2, date(2024, 3, 1), 30, D("50.00"), D("100.00"), D("150.00"))

    def test_change_effective_between_due_dates_starts_at_the_next_one(self):
        """A change effective Feb 10 applies from the Mar 1 installment (the first due on or after it)."""
        row = one(loan(), [], date(2024, 3, 1), changes=[("L", date(2024, 2, 10), "80.00")])
        assert (row["total_due"], row["installment_amount"]) == (D("280.00"), D("80.00"))

    def test_latest_change_wins_and_future_changes_wait(self):
        """Two changes: 120 from Feb, 90 from Apr; as of Mar 1 Jan-Mar sum to 340, current payment 120."""
        changes = [("L", date(2024, 2, 1), "120.00"), ("L", date(2024, 4, 1), "90.00")]
        row = one(loan(), [pay("L", date(2024, 1, 1), "340.00")], date(2024, 3, 1), changes=changes)
        assert (
            row["total_due"],
            row["installments_paid"],
            row["installment_amount"],
            row["days_past_due"],
        ) == (D("340.00"), 3, D("120.00"), 0)
        row = one(loan(), [pay("L", date(2024, 1, 1), "340.00")], date(2024, 4, 2), changes=changes)
        assert (
            row["total_due"],
            row["installments_paid"],
            row["days_past_due"],
            row["amount_past_due"],
        ) == (D("430.00"), 3, 1, D("90.00"))

    def test_change_before_the_first_due_date_replaces_the_base_payment(self):
        """A change effective before installment 0 sets every installment's amount."""
        row = one(loan(), [], date(2024, 2, 1), changes=[("L", date(2023, 12, 1), "75.00")])
        assert row["total_due"] == D("150.00")


class TestTolerance:
    @pytest.mark.parametrize(
        ("tolerance", "paid", "days", "past_due"),
        [
            (D("1.00"), 1, 0, D("0.00")),
            (D("0.50"), 1, 0, D("0.00")),
            (D("0.49"), 0, 9, D("0.50")),
            (D("0"), 0, 9, D("0.50")),
        ],
    )
    def test_fifty_cents_short(self, tolerance, paid, days, past_due):
        """99.50 paid on a 100.00 installment: current within the tolerance, past due beyond it."""
        row = one(
            loan(), [pay("L", date(2024, 1, 1), "99.50")], date(2024, 1, 10), tolerance=tolerance
        )
        assert (row["installments_paid"], row["days_past_due"], row["amount_past_due"]) == (
            paid,
            days,
            past_due,
        )

    def test_tolerance_with_more_than_cents_is_refused(self):
        """A tolerance finer than a cent is a settings error, not silently rounded."""
        with pytest.raises(ValueError, match="tolerance"):
            status(loan(), [], date(2024, 1, 10), tolerance=D("0.005"))


class TestSchedule:
    def test_before_the_first_due_date(self):
        """Not yet at its first due date: nothing due, current, next due is the first due date."""
        row = one(loan(first=date(2024, 3, 1)), [], date(2024, 2, 29))
        assert (
            row["installments_due"],
            row["days_past_due"],
            row["bucket"],
            row["next_due_date"],
            row["total_due"],
            row["installment_amount"],
        ) == (0, 0, "current", date(2024, 3, 1), D("0.00"), D("100.00"))

    def test_money_before_the_first_due_date_is_suspense(self):
        """A payment before anything is due is held as paid ahead."""
        row = one(
            loan(first=date(2024, 3, 1)), [pay("L", date(2024, 2, 1), "60.00")], date(2024, 2, 29)
        )
        assert row["suspense_amount"] == D("60.00")

    def test_installments_stop_at_the_term(self):
        """A 3-month loan from Jan 1 2024: 3 due on Dec 31, none after; past due from the first missed."""
        row = one(loan(term=3), [pay("L", date(2024, 1, 1), "100.00")], date(2024, 12, 31))
        assert (
            row["installments_due"],
            row["installments_paid"],
            row["total_due"],
            row["oldest_unpaid_due_date"],
            row["next_due_date"],
            row["installment_amount"],
        ) == (3, 1, D("300.00"), date(2024, 2, 1), None, D("100.00"))

    def test_term_paid_in_full(self):
        """Every installment of the term paid: current, with nothing next due."""
        row = one(loan(term=2), [pay("L", date(2024, 1, 1), "200.00")], date(2024, 6, 1))
        assert (
            row["installments_due"],
            row["installments_paid"],
            row["days_past_due"],
            row["next_due_date"],
            row["suspense_amount"],
        ) == (2, 2, 0, None, D("0.00"))


class TestBuckets:
    @pytest.mark.parametrize(
        ("days", "bucket"),
        [
            (0, "current"),
            (1, "1-29"),
            (29, "1-29"),
            (30, "30-59"),
            (59, "30-59"),
            (60, "60-89"),
            (89, "60-89"),
            (90, "90-119"),
            (119, "90-119"),
            (120, "120-179"),
            (179, "120-179"),
            (180, "180+"),
            (400, "180+"),
        ],
    )
    def test_bucket_boundaries(self, days, bucket):
        """Days past due counted from the first unpaid due date land in the contract's bucket."""
        first = date(2023, 1, 15)
        row = one(loan(first=first), [], first + timedelta(days=days))
        assert (row["days_past_due"], row["bucket"]) == (days, bucket)

    def test_every_bucket_name_is_the_contracts(self):
        """The engine only produces bucket names from transforms.contract.BUCKETS."""
        first = date(2023, 1, 15)
        loans = [
            loan(loan_id=f"L{d}", first=first - timedelta(days=d))
            for d in (0, 5, 35, 65, 95, 125, 185)
        ]
        got = status(loans, [], first)
        assert sorted(got["bucket"].to_list(), key=BUCKETS.index) == list(BUCKETS)


class TestMetro2:
    @pytest.mark.parametrize(
        ("days", "account_status", "rating"),
        [
            (0, "11", "0"),
            (29, "11", "0"),
            (30, "71", "1"),
            (59, "71", "1"),
            (60, "78", "2"),
            (89, "78", "2"),
            (90, "80", "3"),
            (119, "80", "3"),
            (120, "82", "4"),
            (149, "82", "4"),
            (150, "83", "5"),
            (179, "83", "5"),
            (180, "84", "6"),
        ],
    )
    def test_codes_by_days_past_due(self, days, account_status, rating):
        """Account Status 11/71/78/80/82/83/84 and Payment Rating 0-6 by days past due."""
        first = date(2023, 1, 15)
        row = one(loan(first=first), [], first + timedelta(days=days))
        assert (row["metro2_account_status"], row["metro2_payment_rating"]) == (
            account_status,
            rating,
        )


class TestMilestones:
    def test_milestones_count_from_the_oldest_unpaid_due_date(self):
        """Jan 1 missed: live contact by Feb 6, written notice by Feb 15, default Mar 31, >120 on May 1 (2024)."""
        row = one(loan(), [], date(2024, 1, 20))
        assert (
            row["live_contact_due_date"],
            row["written_notice_due_date"],
            row["default_date"],
            row["past_120_date"],
        ) == (date(2024, 2, 6), date(2024, 2, 15), date(2024, 3, 31), date(2024, 5, 1))

    def test_payment_moves_the_milestones_forward(self):
        """Once January is paid, the milestones count from February (comment 31-2)."""
        row = one(loan(), [pay("L", date(2024, 2, 3), "100.00")], date(2024, 2, 4))
        assert row["live_contact_due_date"] == date(2024, 3, 8)

    def test_no_milestones_when_current(self):
        """A current loan has no milestone dates."""
        row = one(loan(), [pay("L", date(2024, 1, 1), "100.00")], date(2024, 1, 20))
        assert [
            row[c]
            for c in (
                "live_contact_due_date",
                "written_notice_due_date",
                "default_date",
                "past_120_date",
            )
        ] == [None] * 4


class TestPopulation:
    def test_only_active_loans(self):
        """Paid-off, charged-off, foreclosure and transferred loans are not reported."""
        loans = [
            loan(loan_id=s, status=s)
            for s in ("active", "paid_off", "charged_off", "foreclosure", "transferred")
        ]
        assert status(loans, [], date(2024, 2, 1))["loan_id"].to_list() == ["active"]

    def test_not_yet_originated(self):
        """A loan originated after the as-of date (a replayed night) is not reported."""
        loans = [
            loan(loan_id="old"),
            loan(loan_id="new", first=date(2024, 6, 1), originated=date(2024, 5, 1)),
        ]
        assert status(loans, [], date(2024, 4, 30))["loan_id"].to_list() == ["old"]

    def test_columns_and_types(self):
        """The output has STATUS_COLUMNS, in order, with their types; money is Decimal(14, 2)."""
        got = status(
            [loan(loan_id="A"), loan(loan_id="B")],
            [pay("A", date(2024, 1, 1), "100.00")],
            date(2024, 2, 2),
        )
        assert dict(got.schema) == STATUS_COLUMNS
        assert got["as_of_date"].unique().to_list() == [date(2024, 2, 2)]

    def test_lazy_inputs(self):
        """LazyFrames in give the same result as DataFrames."""
        con = ledger([pay("L", date(2024, 1, 1), "100.00")])
        frames = (loans_frame(loan()), changes_frame(), net_paid(con, date(2024, 3, 1)))
        eager = loan_status(*frames, date(2024, 3, 1))
        lazy = loan_status(*(f.lazy() for f in frames), date(2024, 3, 1))
        assert eager.equals(lazy)

    def test_untyped_empty_payment_changes(self):
        """An empty payment_changes frame without column types is no payment change."""
        con = ledger([])
        untyped = pl.DataFrame({"loan_id": [], "effective_due_date": [], "scheduled_payment": []})
        got = loan_status(
            loans_frame(loan()), untyped, net_paid(con, date(2024, 2, 1)), date(2024, 2, 1)
        )
        assert got["total_due"].to_list() == [D("200.00")]

    def test_loan_with_no_active_rows(self):
        """No active loans: an empty frame with the status columns."""
        got = status(loan(status="paid_off"), [], date(2024, 2, 1))
        assert got.is_empty() and dict(got.schema) == STATUS_COLUMNS


# --------------------------------------------------------------------------- history


def history_of(
    loans: list[dict],
    rows: list[tuple],
    month_ends: list[date],
    changes: Iterable[tuple] = (),
    loans_frame_: pl.DataFrame | None = None,
) -> pl.DataFrame:
    con = ledger(rows)
    running = con.sql(
        query("net_paid_month_ends"),
        params={"from_date": min(month_ends), "to_date": max(month_ends)},
    ).pl()
    frame = loans_frame_ if loans_frame_ is not None else loans_frame(*loans)
    return loan_status_history(frame, changes_frame(*changes), running, month_ends)


MONTH_ENDS = [date(2024, 1, 31), date(2024, 2, 29), date(2024, 3, 31), date(2024, 4, 30)]


class TestHistory:
    def test_same_figures_as_loan_status_at_each_month_end(self):
        """The history at a month end is exactly loan_status as of that date (one implementation)."""
        p = pay("A", date(2024, 2, 1), "100.00")
        rows = [
            pay("A", date(2024, 1, 1), "100.00"),
            p,
            reverse(p, date(2024, 3, 3)),
            pay("B", date(2024, 1, 20), "250.00"),
            pay("C", date(2024, 4, 2), "30.00"),
        ]
        loans = [
            loan(loan_id="A"),
            loan(loan_id="B", first=date(2024, 1, 31)),
            loan(loan_id="C", term=2),
            loan(loan_id="D", first=date(2024, 3, 15)),
        ]
        changes = [("A", date(2024, 3, 1), "110.00")]
        history = history_of(loans, rows, MONTH_ENDS, changes)
        assert history.height == 4 * 4 - 1  # D is originated on Feb 14
        for month_end in MONTH_ENDS:
            expected = status(loans, rows, month_end, changes=changes)
            got = history.filter(pl.col("as_of_date") == month_end).drop("current_balance")
            assert got.sort("loan_id").equals(expected.sort("loan_id")), month_end

    def test_snapshots_per_month_end(self):
        """With an as_of_date column, each month end uses the loan master as it stood then."""
        snapshots = pl.concat(
            [
                loans_frame(loan(loan_id="A"), loan(loan_id="B")).with_columns(
                    pl.lit(MONTH_ENDS[0]).alias("as_of_date")
                ),
                loans_frame(
                    loan(loan_id="A"),
                    loan(loan_id="B", status="paid_off"),
                    loan(loan_id="C", payment="50.00"),
                ).with_columns(pl.lit(MONTH_ENDS[1]).alias("as_of_date")),
            ]
        )
        history = history_of([], [], MONTH_ENDS[:2], loans_frame_=snapshots)
        assert history.select("as_of_date", "loan_id").rows() == [
            (MONTH_ENDS[0], "A"),
            (MONTH_ENDS[0], "B"),
            (MONTH_ENDS[1], "A"),
            (MONTH_ENDS[1], "C"),
        ]
        assert history.filter(pl.col("loan_id") == "C")["total_due"].to_list() == [D("100.00")]

    def test_no_month_ends(self):
        """No month ends: an empty frame with the history columns."""
        got = loan_status_history(loans_frame(loan()), changes_frame(), pl.DataFrame(), [])
        assert got.is_empty() and got.columns == [*STATUS_COLUMNS, "current_balance"]


def observations(*rows: tuple) -> pl.DataFrame:
    """A history from (as_of_date, loan_id, days_past_due, oldest_unpaid_due_date, balance)."""
    frame = pl.DataFrame(
        rows,
        schema={
            "as_of_date": pl.Date,
            "loan_id": pl.String,
            "days_past_due": pl.Int32,
            "oldest_unpaid_due_date": pl.Date,
            "current_balance": pl.Decimal(14, 2),
        },
        orient="row",
    )
    return frame.with_columns(bucket_of(pl.col("days_past_due")).alias("bucket"))


J, F, M, A = MONTH_ENDS


class TestBucketTransitions:
    def test_one_row_per_spell(self):
        """current -> 30-59 -> 30-59 -> current gives three spells; the last one open."""
        history = observations(
            (J, "L", 0, None, None),
            (F, "L", 30, J, None),
            (M, "L", 40, F, None),
            (A, "L", 0, None, None),
        )
        assert bucket_transitions(history).rows() == [
            ("L", "current", J, F),
            ("L", "30-59", F, A),
            ("L", "current", A, None),
        ]

    def test_leaving_the_portfolio_closes_the_spell(self):
        """A loan no longer reported at the next date leaves its bucket on that date."""
        history = observations(
            (J, "L", 0, None, None),
            (F, "L", 5, F, None),
            (F, "K", 0, None, None),
            (M, "K", 0, None, None),
        )
        assert bucket_transitions(history).filter(pl.col("loan_id") == "L").rows() == [
            ("L", "current", J, F),
            ("L", "1-29", F, M),
        ]

    def test_return_after_an_absence_is_a_new_spell(self):
        """Absent at one date and back in the same bucket: two spells, not one."""
        history = observations(
            (J, "L", 0, None, None), (F, "K", 0, None, None), (M, "L", 0, None, None)
        )
        assert bucket_transitions(history).filter(pl.col("loan_id") == "L").rows() == [
            ("L", "current", J, F),
            ("L", "current", M, None),
        ]


class TestCurrentDelinquencyStart:
    def test_start_of_the_unbroken_run(self):
        """Delinquent since the Jan 15 due date, rolling forward without curing: starts Jan 15."""
        history = observations(
            (J, "L", 16, date(2024, 1, 15), None),
            (F, "L", 14, date(2024, 2, 15), None),
            (M, "L", 45, date(2024, 2, 15), None),
        )
        assert current_delinquency_start(history).rows() == [("L", M, date(2024, 1, 15), J)]

    def test_a_cure_starts_a_new_run(self):
        """Current in February, behind again in March: the delinquency starts at March's oldest unpaid date."""
        history = observations(
            (J, "L", 16, date(2024, 1, 15), None),
            (F, "L", 0, None, None),
            (M, "L", 16, date(2024, 3, 15), None),
        )
        assert current_delinquency_start(history).rows() == [("L", M, date(2024, 3, 15), M)]

    def test_empty_history(self):
        """No observations: no rows, with the documented columns."""
        got = current_delinquency_start(observations())
        assert got.is_empty() and got.columns == [
            "loan_id",
            "as_of_date",
            "delinquency_start_date",
            "first_observed_date",
        ]

    def test_only_loans_delinquent_at_the_latest_date(self):
        """Current, and gone, loans have no current delinquency."""
        history = observations(
            (J, "gone", 40, date(2023, 12, 15), None),
            (F, "ok", 0, None, None),
            (F, "late", 3, date(2024, 2, 26), None),
        )
        assert current_delinquency_start(history)["loan_id"].to_list() == ["late"]


class TestNightlyTail:
    """Month-end spells plus tonight's tail equal the spells recomputed over everything."""

    @pytest.mark.parametrize("seed", range(5))
    def test_tail_matches_full_recompute(self, seed):
        import random

        rng = random.Random(seed)
        rows = []
        tonight = date(2024, 5, 9)
        for loan in range(300):
            for when in (*MONTH_ENDS, tonight):
                if rng.random() < 0.1:
                    continue  # not reported that day
                dpd = rng.choice([0, 0, 0, 5, 31, 45, 61, 95, 130, 200])
                rows.append(
                    (when, f"L{loan:03d}", dpd, when - timedelta(days=dpd) if dpd else None, None)
                )
        history = observations(*rows)
        months, night = (
            history.filter(pl.col("as_of_date") < tonight),
            history.filter(pl.col("as_of_date") == tonight),
        )

        base = bucket_transitions(months)
        closing, opening = spell_tail(base.filter(pl.col("left_date").is_null()), night, tonight)
        extended = pl.concat(
            [
                base.with_columns(
                    pl.when(
                        pl.col("left_date").is_null()
                        & pl.col("loan_id").is_in(closing["loan_id"].implode())
                    )
                    .then(pl.lit(tonight))
                    .otherwise(pl.col("left_date"))
                    .alias("left_date")
                ),
                opening,
            ]
        ).sort("loan_id", "entered_date")
        assert extended.equals(bucket_transitions(history).sort("loan_id", "entered_date"))

        starts = delinquency_start_tail(current_delinquency_start(months), night, tonight)
        assert starts.equals(current_delinquency_start(history))

    @pytest.mark.parametrize("seed", range(3))
    def test_parts_of_the_loans_give_the_whole_history_s_spells(self, seed):
        """Spells and delinquency runs taken a part of the loans at a time, with the whole
        history's observation dates, are those of the whole history (a part may miss a
        date, or hold no loan at the latest one)."""
        import random

        rng = random.Random(seed)
        rows = [
            (when, f"L{loan:02d}", dpd, when - timedelta(days=dpd) if dpd else None, None)
            for loan in range(40)
            for when in MONTH_ENDS
            if rng.random() < 0.8 and (dpd := rng.choice([0, 0, 5, 31, 61, 95])) is not None
        ]
        history = observations(*rows)
        dates = sorted(set(history["as_of_date"].to_list()))
        parts = [
            history.filter(pl.col("loan_id").is_in([f"L{i:02d}" for i in range(k, 40, 7)]))
            for k in range(7)
        ]
        assert (
            pl.concat([bucket_transitions(p, dates) for p in parts])
            .sort("loan_id", "entered_date")
            .equals(bucket_transitions(history))
        )
        assert (
            pl.concat([current_delinquency_start(p, dates) for p in parts])
            .sort("loan_id")
            .equals(current_delinquency_start(history))
        )
        # a part whose one loan was last reported in February: it leaves at the next date
        # of the whole history, and is not delinquent at its latest date
        lone = observations((J, "Z", 31, J, None), (F, "Z", 61, J, None))
        assert bucket_transitions(lone, list(MONTH_ENDS)).rows() == [
            ("Z", "30-59", J, F),
            ("Z", "60-89", F, M),
        ]
        assert current_delinquency_start(lone, list(MONTH_ENDS)).is_empty()


class TestRollRates:
    def history(self) -> pl.DataFrame:
        return observations(
            (F, "a", 0, None, D("100.00")),
            (M, "a", 0, None, D("90.00")),
            (F, "b", 0, None, D("200.00")),
            (M, "b", 31, F, D("200.00")),
            (F, "c", 35, J, D("300.00")),
            (M, "c", 65, J, D("300.00")),
            (F, "d", 40, J, D("400.00")),
            (M, "d", 0, None, D("380.00")),
            (F, "e", 0, None, D("500.00")),
            (F, "f", 10, F, D("600.00")),
            (M, "g", 0, None, D("700.00")),
        )

    def test_matrix_with_new_and_exits(self):
        """From the previous month end's bucket to this one's, with new loans and named exits."""
        loans = pl.DataFrame({"loan_id": ["e", "f"], "status": ["paid_off", "active"]})
        got = roll_rates(self.history(), M, loans)
        assert got.select("from_bucket", "to_bucket", "loan_count", "balance").rows() == [
            ("new", "current", 1, D("700.00")),
            ("current", "current", 1, D("100.00")),
            ("current", "30-59", 1, D("200.00")),
            ("current", "paid_off", 1, D("500.00")),
            ("1-29", "exited", 1, D("600.00")),
            ("30-59", "current", 1, D("400.00")),
            ("30-59", "60-89", 1, D("300.00")),
        ]
        shares = {(r["from_bucket"], r["to_bucket"]): r["share"] for r in got.to_dicts()}
        assert shares[("current", "30-59")] == pytest.approx(1 / 3)
        assert shares[("30-59", "60-89")] == pytest.approx(0.5)
        balance_shares = {
            (r["from_bucket"], r["to_bucket"]): r["balance_share"] for r in got.to_dicts()
        }
        assert balance_shares[("30-59", "60-89")] == pytest.approx(300 / 700)
        assert got["month_end_date"].unique().to_list() == [M]

    def test_without_balances_counts_only(self):
        """A history without current_balance gives counts and shares, null balances."""
        got = roll_rates(self.history().drop("current_balance"), M)
        assert got["balance"].null_count() == got.height
        assert got.filter(pl.col("from_bucket") == "current")["to_bucket"].to_list() == [
            "current",
            "30-59",
            "exited",
        ]

    def test_refuses_a_missing_month_end(self):
        """Asking for a month end the history lacks (or its previous one) is an error, not an empty matrix."""
        with pytest.raises(ValueError, match="2024-01-31"):
            roll_rates(self.history(), F)
        with pytest.raises(ValueError, match="not a month end"):
            roll_rates(self.history(), date(2024, 3, 30))
