"""The review workbench: cases across nights, decisions acting on the next night, the outputs.

The pure rules (``transforms/cases.py``) are tested on small frames; the decisions are
also recorded through ``lienwatch review`` against a small warehouse
(``tests.helpers.build_warehouse``, also used by ``test_review_page.py``), and the night's
review step is run over it.
"""

from __future__ import annotations

import csv
import io
import json
import re
import stat
import zipfile
from datetime import date, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from lienwatch import warehouse
from lienwatch.errors import LienwatchError
from lienwatch.review import decisions, page
from lienwatch.review_cli import review_app
from lienwatch.settings import Settings
from lienwatch.workbench.store import open_store, store_url
from tests.helpers import (
    HOSTILE,
    NIGHT,
    PREVIOUS,
    build_warehouse,
    decided,
    decision,
    default_dpd,
    flags,
    nights,
    payments_frame,
    run_review,
    write_night,
)
from transforms import cases
from transforms.letters import LETTER_SCHEMA
from transforms.review import export_frame

# --------------------------------------------------------------------------- a small warehouse


@pytest.fixture
def built(tmp_path) -> Path:
    build_warehouse(tmp_path / "wh.duckdb", tmp_path / "out")
    return tmp_path


def set_flags(tmp_path: Path, as_of: date, dpd: dict[str, int]) -> None:
    con = warehouse.connect(tmp_path / "wh.duckdb")
    try:
        write_night(con, tmp_path / "out", as_of, dpd)
    finally:
        con.close()


def cli(tmp_path: Path, *args: str) -> str:
    """A ``lienwatch review`` command, then the start of a night: it takes the decision in
    from the workbench store, where the command wrote it."""
    done = CliRunner().invoke(
        review_app, [*args, "--db", str(tmp_path / "wh.duckdb"), "--by", "ann"]
    )
    assert done.exit_code == 0, done.output
    take_in(tmp_path)
    return done.output


def take_in(tmp_path: Path) -> int:
    con = warehouse.connect(tmp_path / "wh.duckdb")
    try:
        return decisions.take_in(con, open_store(store_url(Settings(), tmp_path / "wh.duckdb")))
    finally:
        con.close()


def table(tmp_path: Path, query: str) -> pl.DataFrame:
    con = warehouse.connect(tmp_path / "wh.duckdb", read_only=True)
    try:
        return con.sql(query).pl()
    finally:
        con.close()


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# --------------------------------------------------------------------------- cases


class TestCases:
    def test_a_newly_flagged_loan_opens_a_case(self):
        log = nights(flags(A="delinquent"))
        assert log.select("case_id", "event", "from_tier", "to_tier", "note").rows() == [
            ("C20261120-A", "opened", None, "delinquent", "flagged delinquent at 35 days past due")
        ]
        state = cases.case_state(log)
        assert state.rows() == [("C20261120-A", "A", NIGHT, "delinquent", "open", None)]

    def test_a_higher_tier_escalates_and_a_lower_one_de_escalates(self):
        log = nights(
            flags(A="early_warning"),
            flags(A="imminent_default"),
            flags(A="delinquent"),
            flags(A="delinquent"),
        )
        assert log["event"].to_list() == ["opened", "escalated", "de-escalated"]
        assert log.filter(pl.col("event") == "escalated").select("from_tier", "to_tier").row(0) == (
            "early_warning",
            "imminent_default",
        )
        state = cases.case_state(log).row(0, named=True)
        assert (state["tier"], state["status"], state["opened_date"]) == (
            "delinquent",
            "open",
            NIGHT,
        )

    def test_a_loan_no_longer_flagged_resolves_its_case_and_a_new_flag_opens_another(self):
        log = nights(
            flags(A="default", B="early_warning"), flags(B="early_warning"), flags(A="delinquent")
        )
        assert log.select("loan_id", "event", "as_of_date").rows() == [
            ("A", "opened", NIGHT),
            ("B", "opened", NIGHT),
            ("A", "resolved", NIGHT + timedelta(days=1)),
            ("A", "opened", NIGHT + timedelta(days=2)),
            ("B", "resolved", NIGHT + timedelta(days=2)),
        ]
        state = cases.case_state(log)
        assert state.select("case_id", "status", "tier", "resolved_date").rows() == [
            ("C20261120-A", "resolved", "default", NIGHT + timedelta(days=1)),
            ("C20261122-A", "open", "delinquent", None),
            ("C20261120-B", "resolved", "early_warning", NIGHT + timedelta(days=2)),
        ]

    def test_the_cases_returned_are_the_state_the_log_leaves(self):
        before = nights(flags(A="early_warning", B="default"))
        after, events = cases.case_events(
            cases.case_state(before), flags(A="default"), NIGHT + timedelta(days=1)
        )
        assert after.sort("case_id").equals(
            cases.case_state(pl.concat([before, events])).sort("case_id")
        )

    def test_the_night_step_rerun_does_not_duplicate_events(self, built):
        assert run_review(built, PREVIOUS)["events"] == {"opened": 8}
        first = run_review(built)
        again = run_review(built)
        assert first["events"] == again["events"] == {"escalated": 1}  # LN000002 reached 30 days
        log = table(
            built, "SELECT event, count(*) AS n FROM review_case_events GROUP BY ALL ORDER BY event"
        )
        assert log.rows() == [("escalated", 1), ("opened", 8)]
        # Tonight's flags change (one loan cured, one fell back): a rerun replaces, never adds.
        dpd = default_dpd(8)
        del dpd["LN000001"]
        dpd["LN000006"] = 40
        set_flags(built, NIGHT, dpd)
        changed = {"escalated": 1, "resolved": 1, "de-escalated": 1}
        assert run_review(built)["events"] == changed
        assert run_review(built)["events"] == changed
        log = table(
            built, "SELECT event, count(*) AS n FROM review_case_events GROUP BY ALL ORDER BY event"
        )
        assert log.rows() == [("de-escalated", 1), ("escalated", 1), ("opened", 8), ("resolved", 1)]
        state = table(
            built,
            """SELECT loan_id, tier, status FROM review_cases
                                WHERE loan_id IN ('LN000001', 'LN000006') ORDER BY 1""",
        )
        assert state.rows() == [
            ("LN000001", "early_warning", "resolved"),
            ("LN000006", "delinquent", "open"),
        ]


# --------------------------------------------------------------------------- decisions (pure)


MORNING = datetime(2026, 11, 20, 9, 30)


def letters(*rows: tuple) -> pl.DataFrame:
    """(letter_id, loan_id, template, status, suppression_reason)."""
    return pl.DataFrame(
        [
            {
                "letter_id": i,
                "as_of_date": NIGHT,
                "loan_id": loan,
                "borrower_id": "B" + loan,
                "template": t,
                "language": "en",
                "status": s,
                "suppression_reason": why,
            }
            for i, loan, t, s, why in rows
        ],
        schema=LETTER_SCHEMA,
    )


TONIGHT = letters(
    ("X1", "A", "early_intervention", "generated", None),
    ("X2", "B", "early_warning", "generated", None),
    ("X3", "C", "early_warning", "suppressed", "borrower deceased: routed to review"),
)


class TestHolds:
    def test_a_held_loan_has_its_letter_suppressed_with_who_and_when(self):
        holds = cases.active_holds(
            decided(decision("hold", "A", MORNING), decision("hold", "C", MORNING)), NIGHT
        )
        out = cases.apply_holds(TONIGHT, holds)
        assert out.columns == TONIGHT.columns
        assert out.select("letter_id", "status", "suppression_reason").rows() == [
            ("X1", "suppressed", "held by analyst ann on 2026-11-20"),
            ("X2", "generated", None),
            ("X3", "suppressed", "borrower deceased: routed to review"),  # its own reason is kept
        ]

    def test_a_hold_on_a_letter_stops_it_and_the_loans_later_letters_of_that_template(self):
        held = decision(
            "hold", "B", MORNING - timedelta(days=30), letter_id="OLD", template="early_warning"
        )
        other = decision("hold", "A", MORNING, letter_id="Y", template="heloc_counseling")
        out = cases.apply_holds(TONIGHT, cases.active_holds(decided(held, other), NIGHT))
        assert out["status"].to_list() == ["generated", "suppressed", "suppressed"]
        assert out["suppression_reason"][1] == "held by analyst ann on 2026-10-21"

    def test_a_release_lifts_the_hold_from_the_next_night(self):
        log = [
            decision("hold", "A", MORNING - timedelta(days=2)),
            decision("release", "A", MORNING + timedelta(days=1), by="bob"),
        ]
        assert cases.active_holds(decided(*log), NIGHT).height == 1
        assert cases.active_holds(decided(*log), NIGHT + timedelta(days=1)).is_empty()
        again = [*log, decision("hold", "A", MORNING + timedelta(days=3))]
        assert cases.active_holds(decided(*again), NIGHT + timedelta(days=3))[
            "held_on"
        ].to_list() == [date(2026, 11, 23)]

    def test_releasing_one_letter_leaves_the_loans_other_holds(self):
        log = [
            decision("hold", "A", MORNING, letter_id="X1", template="early_intervention"),
            decision("hold", "A", MORNING, letter_id="Z", template="heloc_counseling"),
            decision("release", "A", MORNING + timedelta(hours=1), letter_id="X1"),
        ]
        assert cases.active_holds(decided(*log), NIGHT)["letter_id"].to_list() == ["Z"]

    def test_a_hold_made_after_the_night_does_not_act_on_it(self):
        later = decided(decision("hold", "A", datetime(2026, 11, 21, 8, 0)))
        assert cases.apply_holds(TONIGHT, cases.active_holds(later, NIGHT)).equals(TONIGHT)


class TestApplications:
    def test_an_application_opens_loss_mitigation_until_the_feed_carries_it(self):
        log = decided(
            decision("application", "A", MORNING), decision("note", "B", MORNING, note="x")
        )
        feed = pl.DataFrame({"loan_id": ["A"], "opened_date": [date(2026, 11, 24)]})
        assert cases.open_applications(log, feed, NIGHT - timedelta(days=1)).is_empty()
        found = cases.open_applications(log, feed, NIGHT)
        assert found.rows() == [("A", "application", "open", NIGHT, None)]
        assert cases.open_applications(log, feed, date(2026, 11, 23)).height == 1
        assert cases.open_applications(log, feed, date(2026, 11, 24)).is_empty()

    def test_an_older_feed_case_does_not_hide_a_new_application(self):
        feed = pl.DataFrame({"loan_id": ["A"], "opened_date": [date(2025, 1, 1)]})
        assert (
            cases.open_applications(
                decided(decision("application", "A", MORNING)), feed, NIGHT
            ).height
            == 1
        )


class TestPromises:
    PROMISE = decision(
        "promise", "A", MORNING, promise_date=date(2026, 11, 25), promise_amount=D("400.00")
    )

    def status(self, payments: pl.DataFrame, as_of: date) -> tuple:
        found = cases.promise_status(decided(self.PROMISE), payments, as_of)
        return found.select("status", "paid_toward").row(0)

    def test_pending_until_the_date_then_broken(self):
        none = payments_frame(
            ("T0", "A", date(2026, 11, 19), D("400.00"), "payment", None)
        )  # before the promise
        assert self.status(none, date(2026, 11, 25)) == ("pending", D("0.00"))
        assert self.status(none, date(2026, 11, 26)) == ("broken", D("0.00"))

    def test_kept_by_payments_in_the_window_in_parts(self):
        paid = payments_frame(
            ("T1", "A", date(2026, 11, 20), D("150.00"), "payment", None),
            ("T2", "A", date(2026, 11, 24), D("250.00"), "payment", None),
            ("T3", "B", date(2026, 11, 24), D("999.00"), "payment", None),
        )
        assert self.status(paid, date(2026, 11, 22)) == ("pending", D("150.00"))
        assert self.status(paid, date(2026, 11, 24)) == ("kept", D("400.00"))
        assert self.status(paid, date(2026, 12, 30)) == ("kept", D("400.00"))

    def test_a_reversed_payment_does_not_keep_it_and_a_late_one_does_not_count(self):
        paid = payments_frame(
            ("T1", "A", date(2026, 11, 21), D("400.00"), "payment", None),
            ("R1", "A", date(2026, 11, 27), D("400.00"), "reversal", "T1"),
            ("T2", "A", date(2026, 11, 26), D("400.00"), "payment", None),
        )
        assert self.status(paid, date(2026, 11, 25)) == ("kept", D("400.00"))
        assert self.status(paid, date(2026, 11, 27)) == ("broken", D("0.00"))

    def test_a_promise_made_after_the_night_is_not_there_yet(self):
        assert cases.promise_status(
            decided(self.PROMISE), payments_frame(), NIGHT - timedelta(days=1)
        ).is_empty()


CANDIDATES = pl.DataFrame(
    {
        "loan_id": ["A", "B", "C", "D", "E"],
        "queue_rank": [5, 4, 3, 2, 1],
        "live_contact_due_date": [
            NIGHT - timedelta(days=3),
            NIGHT,
            NIGHT + timedelta(days=1),
            NIGHT + timedelta(days=2),
            None,
        ],
        "delinquency_start_date": [
            NIGHT - timedelta(days=39),
            NIGHT - timedelta(days=36),
            NIGHT - timedelta(days=35),
            NIGHT - timedelta(days=34),
            None,
        ],
    }
)


class TestCallList:
    def test_due_by_tomorrow_in_order(self):
        listed = cases.call_list(CANDIDATES, decided(), NIGHT)
        assert listed.select("loan_id", "call_status").rows() == [
            ("A", "overdue"),
            ("B", "due today"),
            ("C", "due tomorrow"),
        ]

    def test_a_contact_since_the_delinquency_began_takes_the_loan_off(self):
        log = decided(
            decision("contact", "A", datetime(2026, 10, 20, 10)),  # after A's start (Oct 12)
            decision(
                "contact", "B", datetime(2026, 9, 1, 10)
            ),  # a contact in an earlier delinquency
            decision("contact", "C", datetime(2026, 11, 21, 10)),
        )  # after the night
        listed = cases.call_list(CANDIDATES, log, NIGHT)
        assert listed.select("loan_id", "last_contact_date").rows() == [
            ("B", date(2026, 9, 1)),
            ("C", None),
        ]


class TestOnPage:
    QUEUE = pl.DataFrame(
        {
            "loan_id": [f"L{k}" for k in range(1, 11)],
            "queue_rank": list(range(1, 11)),
            "in_queue": [k <= 3 for k in range(1, 11)],
        }
    )
    CALLS = pl.DataFrame({"loan_id": ["L9", "L2", "L7"]})  # in call order

    def ranks(self, limit: int) -> list[int]:
        return cases.on_page(self.QUEUE, self.CALLS, limit)["queue_rank"].to_list()

    def test_all_when_they_fit(self):
        assert self.ranks(10) == list(range(1, 11))

    def test_the_queue_then_the_calls_in_call_order_then_the_rest(self):
        assert self.ranks(4) == [1, 2, 3, 9]
        assert self.ranks(5) == [1, 2, 3, 7, 9]
        assert self.ranks(6) == [1, 2, 3, 4, 7, 9]

    def test_never_more_than_the_limit_even_inside_the_queue(self):
        assert self.ranks(2) == [1, 2]


# --------------------------------------------------------------------------- decisions through the command


class TestDecisionsOnTheNextNight:
    def test_a_hold_recorded_today_suppresses_tonights_letter_and_a_release_lifts_it(self, built):
        cli(
            built,
            "hold",
            "--loan",
            "LN000001",
            "--at",
            "2026-11-20T09:15",
            "--note",
            "disputes the balance",
        )
        con = warehouse.connect(built / "wh.duckdb")
        try:
            assert decisions.holds_as_of(con, PREVIOUS).is_empty()
            night = letters(
                ("N1", "LN000001", "early_warning", "generated", None),
                ("N2", "LN000002", "early_warning", "generated", None),
            )
            out = cases.apply_holds(night, decisions.holds_as_of(con, NIGHT))
        finally:
            con.close()
        assert out.select("status", "suppression_reason").rows() == [
            ("suppressed", "held by analyst ann on 2026-11-20"),
            ("generated", None),
        ]
        cli(built, "release", "--loan", "LN000001", "--at", "2026-11-21T10:00")
        con = warehouse.connect(built / "wh.duckdb", read_only=True)
        try:
            assert decisions.holds_as_of(con, NIGHT).height == 1
            assert decisions.holds_as_of(con, NIGHT + timedelta(days=1)).is_empty()
        finally:
            con.close()

    def test_a_hold_on_one_letter_is_checked_and_names_its_template(self, built):
        cli(
            built,
            "hold",
            "--loan",
            "LN000001",
            "--letter",
            "L20261120-LN000001",
            "--at",
            "2026-11-20T09:15",
        )
        con = warehouse.connect(built / "wh.duckdb", read_only=True)
        try:
            assert decisions.holds_as_of(con, NIGHT).select("letter_id", "template").rows() == [
                ("L20261120-LN000001", "early_warning")
            ]
        finally:
            con.close()

    def test_held_letters_templates_are_found_whatever_the_night_or_id_form(self, built):
        """A decision's letter is looked up in the night its id names (an earlier night's
        too), or, for an id of another form, in every night: each hold names its letter's
        template."""
        con = warehouse.connect(built / "wh.duckdb")
        try:
            for letter_id, night, template in (
                ("L20261021-LN000001", NIGHT - timedelta(days=30), "heloc_counseling"),
                ("manual-7", NIGHT - timedelta(days=60), "imminent_default"),
            ):
                con.execute(
                    """INSERT INTO letters BY NAME SELECT * REPLACE ($id AS letter_id, $night AS as_of_date,
                               $template AS template) FROM letters WHERE letter_id = 'L20261120-LN000001'""",
                    {"id": letter_id, "night": night, "template": template},
                )
        finally:
            con.close()

        def held() -> list[tuple[str, str]]:
            con = warehouse.connect(built / "wh.duckdb", read_only=True)
            try:
                return (
                    decisions.holds_as_of(con, NIGHT)
                    .select("letter_id", "template")
                    .sort("letter_id")
                    .rows()
                )
            finally:
                con.close()

        for letter in ("L20261120-LN000001", "L20261021-LN000001"):
            cli(built, "hold", "--loan", "LN000001", "--letter", letter, "--at", "2026-11-20T09:15")
        assert held() == [
            ("L20261021-LN000001", "heloc_counseling"),
            ("L20261120-LN000001", "early_warning"),
        ]
        cli(built, "hold", "--loan", "LN000001", "--letter", "manual-7", "--at", "2026-11-20T09:20")
        assert held() == [
            ("L20261021-LN000001", "heloc_counseling"),
            ("L20261120-LN000001", "early_warning"),
            ("manual-7", "imminent_default"),
        ]

    def test_an_application_opens_loss_mitigation_the_next_night(self, built):
        cli(built, "application", "--loan", "LN000004", "--at", "2026-11-20T11:00")
        con = warehouse.connect(built / "wh.duckdb", read_only=True)
        try:
            assert decisions.application_cases(con, PREVIOUS).is_empty()
            found = decisions.application_cases(con, NIGHT)
        finally:
            con.close()
        # The flags step's rule for an open case: status open, opened by the night, not closed.
        assert found.rows() == [("LN000004", "application", "open", NIGHT, None)]
        assert found.schema == {
            "loan_id": pl.String,
            "case_type": pl.String,
            "status": pl.String,
            "opened_date": pl.Date,
            "closed_date": pl.Date,
        }

    def test_a_promise_is_kept_broken_or_pending_night_by_night(self, built):
        cli(
            built,
            "promise",
            "--loan",
            "LN000002",
            "--date",
            "2026-11-24",
            "--amount",
            "$1,000.00",
            "--at",
            "2026-11-20T10:00",
        )
        cli(
            built,
            "promise",
            "--loan",
            "LN000003",
            "--date",
            "2026-11-22",
            "--amount",
            "300",
            "--at",
            "2026-11-20T10:05",
        )
        con = warehouse.connect(built / "wh.duckdb")
        try:
            con.execute("""INSERT INTO payments (txn_id, loan_id, posted_date, amount, txn_type, source_file,
                               row_number, load_id)
                           VALUES ('P1', 'LN000002', DATE '2026-11-21', 600, 'payment', 'p.csv', 1, 2),
                                  ('P2', 'LN000002', DATE '2026-11-23', 400, 'payment', 'p.csv', 2, 2)""")
        finally:
            con.close()
        assert run_review(built)["promises"] == {"pending": 2}
        set_flags(built, date(2026, 11, 23), default_dpd(8))
        assert run_review(built, date(2026, 11, 23))["promises"] == {"kept": 1, "broken": 1}
        stored = table(
            built,
            "SELECT as_of_date, loan_id, status, paid_toward FROM review_promises ORDER BY 1, 2",
        )
        assert stored.rows() == [
            (NIGHT, "LN000002", "pending", D("0.00")),
            (NIGHT, "LN000003", "pending", D("0.00")),
            (date(2026, 11, 23), "LN000002", "kept", D("1000.00")),
            (date(2026, 11, 23), "LN000003", "broken", D("0.00")),
        ]

    def test_a_contact_takes_the_loan_off_the_next_call_list(self, built):
        run_review(built)
        listed = [
            (r["loan_id"], r["call_status"])
            for r in read_csv(built / "out" / "2026-11-20" / "call_list.csv")
        ]
        assert listed == [
            ("LN000006", "overdue"),
            ("LN000000", "overdue"),
            ("LN000004", "overdue"),
            ("LN000003", "overdue"),
            ("LN000007", "due tomorrow"),
        ]
        cli(
            built,
            "contact",
            "--loan",
            "LN000004",
            "--at",
            "2026-11-21T09:00",
            "--note",
            "spoke with her",
        )
        set_flags(built, NIGHT + timedelta(days=1), {k: v + 1 for k, v in default_dpd(8).items()})
        run_review(built, NIGHT + timedelta(days=1))
        listed = [
            (r["loan_id"], r["call_status"])
            for r in read_csv(built / "out" / "2026-11-21" / "call_list.csv")
        ]
        assert listed == [
            ("LN000006", "overdue"),
            ("LN000000", "overdue"),
            ("LN000003", "overdue"),
            ("LN000007", "due today"),
        ]

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (("contact", "--loan", "NOPE"), "--loan NOPE: no such loan"),
            (
                ("hold", "--loan", "LN000001", "--letter", "L20261120-LN000002"),
                "is a letter of loan LN000002",
            ),
            (("hold", "--loan", "LN000001", "--letter", "X"), "--letter X: no such letter"),
            (
                ("promise", "--loan", "LN000001", "--date", "2026-11-24", "--amount", "-5"),
                "a positive amount",
            ),
            (
                ("promise", "--loan", "LN000001", "--date", "2026-11-24", "--amount", "ten"),
                "not an amount",
            ),
            (
                ("promise", "--loan", "LN000001", "--date", "2020-01-01", "--amount", "5"),
                "is before the promise",
            ),
            (("note", "--loan", "LN000001", "--note", " "), "a note needs --note text"),
        ],
    )
    def test_refused_with_a_reason_and_nothing_written(self, built, args, message):
        done = CliRunner().invoke(
            review_app, [*args, "--db", str(built / "wh.duckdb"), "--by", "ann"]
        )
        assert done.exit_code == 2
        assert message in done.output
        assert take_in(built) == 0
        con = warehouse.connect(built / "wh.duckdb", read_only=True)
        try:
            assert decisions.decisions(con, date(2100, 1, 1)).is_empty()
        finally:
            con.close()

    def test_by_defaults_to_the_user(self, built, monkeypatch):
        monkeypatch.setenv("USER", "carla")
        done = CliRunner().invoke(
            review_app,
            [
                "note",
                "--loan",
                "LN000001",
                "--note",
                "left a voicemail",
                "--db",
                str(built / "wh.duckdb"),
            ],
        )
        assert done.exit_code == 0, done.output
        take_in(built)
        assert table(built, "SELECT made_by, kind, note FROM review_decisions").rows() == [
            ("carla", "note", "left a voicemail")
        ]


# --------------------------------------------------------------------------- the night's outputs


class TestOutputs:
    def test_files_are_owner_only_and_the_exports_hold_the_queue(self, built):
        counts = run_review(built)
        folder = built / "out" / "2026-11-20"
        for name in ("review.html", "call_list.csv", "queue.csv", "queue.xlsx"):
            assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
        assert not list(folder.glob(".*.part"))
        queue = read_csv(folder / "queue.csv")
        assert [r["queue_rank"] for r in queue] == [str(k) for k in range(1, 9)]
        assert queue[0]["loan_id"] == "LN000006" and queue[0]["tier"] == "default"
        hostile = next(r for r in queue if r["loan_id"] == "LN000000")
        assert hostile["borrower_name"].startswith(HOSTILE)
        assert counts["flagged"] == 8 and counts["call_list"] == 5
        with zipfile.ZipFile(io.BytesIO((folder / "queue.xlsx").read_bytes())) as book:
            strings = book.read("xl/sharedStrings.xml").decode()
        assert "LN000006" in strings and "&lt;/script&gt;" in strings

    def test_a_page_limit_keeps_the_csv_whole_and_says_what_the_page_leaves_out(self, built):
        counts = run_review(
            built, settings=Settings.model_validate({"risk": {"review_page_rows": 3}})
        )
        folder = built / "out" / "2026-11-20"
        assert counts["flagged"] == 8 and counts["on_page"] == 3 and counts["call_list"] == 5
        assert len(read_csv(folder / "queue.csv")) == 8
        assert len(read_csv(folder / "call_list.csv")) == 5
        page = (folder / "review.html").read_text(encoding="utf-8")
        data = json.loads(re.search(r'id="queue-data">(.*?)</script>', page).group(1))
        assert len(data["rows"]) == 3 and len(data["calls"]) == 3
        assert "This page carries 3 of the night's 8 flagged loans" in page
        assert "This page lists 3 of the 5 calls due" in page
        with zipfile.ZipFile(io.BytesIO((folder / "queue.xlsx").read_bytes())) as book:
            sheet = book.read("xl/worksheets/sheet1.xml").decode()
        assert sheet.count("<row ") == 4  # the header and the page's three loans

    def test_a_rerun_writes_the_same_bytes(self, built):
        folder = built / "out" / "2026-11-20"
        run_review(built)
        first = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
        run_review(built)
        assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == first
        assert set(first) == {"review.html", "call_list.csv", "queue.csv", "queue.xlsx"}

    def test_a_formula_in_a_name_is_kept_as_text(self):
        frame = pl.DataFrame(
            {"borrower_name": ['=HYPERLINK("x")', "Ann"], "reasons": [["a", "b"], []]}
        )
        out = export_frame(frame, {"borrower_name": "borrower_name", "reasons": "reasons"})
        assert out.rows() == [('\'=HYPERLINK("x")', "a; b"), ("Ann", "")]

    def test_the_page_escapes_names_and_keeps_data_inside_its_script(self, built):
        run_review(built)
        page = (built / "out" / "2026-11-20" / "review.html").read_text(encoding="utf-8")
        assert HOSTILE not in page
        assert page.count("</script>") == 4  # the three data elements and the script, nothing more
        assert (
            "\\u003c/script\\u003e\\u003cscript\\u003ealert(1)" in page
        )  # in the JSON, as escapes
        assert (
            "http://" not in page.replace("http://www.w3.org/2000/svg", "")
            and "https://" not in page
        )

    def test_a_night_without_its_status_is_refused_before_any_case_is_touched(self, built):
        run_review(built)
        with pytest.raises(LienwatchError, match="no loan_status for 2026-11-21"):
            run_review(built, NIGHT + timedelta(days=1))
        assert table(built, "SELECT count(*) FROM review_cases WHERE status = 'open'").item() == 8


class TestPaymentHistories:
    """An account's payment history: due and paid in each of the last 24 months and
    tonight, with days past due, out of the month-end history (built with
    ``tests.helpers.build_warehouse``: loan i at the k-th month end, oldest first, is
    ((i + k) % 5) * 15 days past due, with total due of (k + 60) installments and net paid
    short by one installment a full 30 days)."""

    def test_each_month_is_what_was_due_and_paid_in_it(self, built):
        con = warehouse.connect(built / "wh.duckdb")
        try:
            labels, full = page.payment_histories(con, NIGHT, ["LN000001", "LN999999"])
        finally:
            con.close()
        assert labels[0] == "2024-11" and labels[-2:] == ["2026-10", NIGHT.isoformat()]
        assert len(labels) == 25
        assert full["loan_id"].to_list() == ["LN000001"]  # none for a loan without figures
        due, paid, late = (full[c].item().to_list() for c in ("due", "paid", "days_past_due"))
        assert late[:24] == [(1 + k) % 5 * 15 for k in range(1, 25)]
        assert due[:24] == [501] * 24  # one installment of 501.00 a month
        behind = [(1 + k) % 5 * 15 // 30 for k in range(25)]  # installments short
        assert paid[:24] == [501 * (1 - behind[k] + behind[k - 1]) for k in range(1, 25)]

    def test_the_nights_kept_month_ends_give_what_the_history_does(self, built):
        """The review step keeps each loan's month-end figures for the nights of a month; a
        night of another month (other month ends) or a changed history reads afresh."""
        run_review(built)
        con = warehouse.connect(built / "wh.duckdb")
        try:
            assert warehouse.table_exists(con, page.HISTORIES)
            loans = [f"LN{i:06d}" for i in range(8)] + ["LN999999"]

            def same(as_of: date) -> bool:
                (labels, kept), (also, read) = (
                    page.payment_histories(con, as_of, loans, kept=True),
                    page.payment_histories(con, as_of, loans),
                )
                return labels == also and kept.equals(read) and kept.height == 8

            assert same(NIGHT)  # kept by the night
            with warehouse.transaction(con):
                con.execute(f"DROP TABLE {page.HISTORIES}")
            # kept for a night before the last month end, then for the night again
            assert same(NIGHT - timedelta(days=45)) and same(NIGHT)
            with warehouse.transaction(con):  # a month end gone from the history
                con.execute(
                    "DELETE FROM loan_status_month_end WHERE loan_id = 'LN000002' AND as_of_date = '2026-06-30'"
                )
            assert same(NIGHT)
            _, kept = page.payment_histories(con, NIGHT, loans, kept=True)
            assert kept.filter(pl.col("loan_id") == "LN000002")["due"].item()[19] is None
        finally:
            con.close()
