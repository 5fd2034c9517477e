"""Letters: the decision rules, every template in both languages, the checklist, hostile names, PDFs."""

from __future__ import annotations

import copy
import dataclasses
import re
from datetime import date, timedelta
from decimal import Decimal as D
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pypdf import PdfReader

from lienwatch import letters as render
from lienwatch import warehouse
from lienwatch.catalogue import load_catalogue
from lienwatch.night import Night
from lienwatch.settings import Settings, SettingsError, parse_settings
from lienwatch.steps import delinquency as delinquency_step
from lienwatch.steps import flags as flags_step
from lienwatch.steps import ingest as ingest_step
from lienwatch.steps import letters as letters_step
from lienwatch.steps import options as options_step
from transforms.contract import LETTER_TEMPLATES
from transforms.letters import (
    GO_LIVE_HOLD,
    HISTORY_COLUMNS,
    MAILING_FIELDS,
    NOTICE_FAMILY,
    REQUIRED,
    Rules,
    blocks,
    check,
    decide,
    letter_id,
    letter_ids,
    mailing_problem,
    mailing_problems,
    night_of,
)

AS_OF = date(2026, 11, 20)
RULES = Rules()

BASE = dict(
    loan_id="L",
    borrower_id="B",
    tier="delinquent",
    care=[],
    days_past_due=35,
    oldest_unpaid_due_date=AS_OF - timedelta(days=35),
    product="closed_end",
    occupancy="primary",
    preferred_language="en",
    bankruptcy_filed_date=None,
    mailing_problem=None,
    has_option=True,
)


def candidates(*loans: dict) -> pl.DataFrame:
    rows = [
        dict(
            BASE, loan_id=o.pop("loan_id", f"L{i}"), borrower_id=o.pop("borrower_id", f"B{i}"), **o
        )
        for i, o in enumerate(copy.deepcopy(list(loans)))
    ]
    return pl.DataFrame(
        rows,
        schema_overrides={
            "care": pl.List(pl.String),
            "bankruptcy_filed_date": pl.Date,
            "mailing_problem": pl.String,
        },
    )


def history(*rows: tuple) -> pl.DataFrame:
    """(loan_id, borrower_id, template, days before tonight)."""
    return pl.DataFrame(
        [
            (f"OLD{i}", AS_OF - timedelta(days=ago), loan, borrower, template)
            for i, (loan, borrower, template, ago) in enumerate(rows)
        ],
        schema=dict.fromkeys(HISTORY_COLUMNS, pl.String) | {"as_of_date": pl.Date},
        orient="row",
    )


NONE = history()


def one(frame: pl.DataFrame, loan: str = "L0") -> dict:
    return frame.filter(pl.col("loan_id") == loan).row(0, named=True)


def decided(*loans: dict, past: pl.DataFrame = NONE, as_of: date = AS_OF) -> pl.DataFrame:
    return decide(candidates(*loans), past, as_of, RULES)


class TestWhichLetter:
    @pytest.mark.parametrize(
        ("loan", "template"),
        [
            ({}, "early_intervention"),
            ({"days_past_due": 29, "tier": "early_warning"}, "early_warning"),
            ({"care": ["bankruptcy"]}, "early_intervention_bankruptcy"),
            ({"care": ["cease_communication"]}, "early_intervention_cease"),
            ({"product": "heloc"}, "heloc_counseling"),
            (
                {"product": "heloc", "days_past_due": 65, "tier": "imminent_default"},
                "heloc_counseling",
            ),
            (
                {"occupancy": "investment", "days_past_due": 65, "tier": "imminent_default"},
                "imminent_default",
            ),
            ({"tier": "early_warning", "days_past_due": 0}, "early_warning"),
        ],
    )
    def test_template(self, loan, template):
        row = one(decided(loan))
        assert (row["template"], row["status"]) == (template, "generated"), row[
            "suppression_reason"
        ]

    def test_no_letter_for_a_quiet_investment_loan_at_35_days(self):
        assert decided({"occupancy": "investment"}).is_empty()

    def test_helocs_never_get_the_regulation_x_notice(self):
        for dpd in (30, 45, 60, 95, 200):
            for tier in ("delinquent", "imminent_default", "default"):
                row = one(decided({"product": "heloc", "days_past_due": dpd, "tier": tier}))
                assert row["template"] == "heloc_counseling"

    def test_helocs_always_get_counseling_when_30_plus_behind(self):
        for dpd in range(30, 46):
            row = one(
                decided(
                    {
                        "product": "heloc",
                        "days_past_due": dpd,
                        "oldest_unpaid_due_date": AS_OF - timedelta(days=dpd),
                    }
                )
            )
            assert (row["template"], row["status"]) == ("heloc_counseling", "generated")
        assert (
            one(decided({"product": "heloc", "days_past_due": 29, "tier": "early_warning"}))[
                "template"
            ]
            == "early_warning"
        )

    def test_counseling_once_per_delinquency(self):
        sent = history(("L0", "B0", "heloc_counseling", 20))
        assert decided({"product": "heloc", "days_past_due": 40}, past=sent).is_empty()
        again = history(("L0", "B0", "heloc_counseling", 100))  # an earlier delinquency
        assert (
            one(decided({"product": "heloc", "days_past_due": 40}, past=again))["status"]
            == "generated"
        )


class TestNoticeCadence:
    def test_notice_by_day_45_from_day_30(self):
        assert one(decided({"days_past_due": 30}))["template"] == "early_intervention"
        assert (
            decided({"days_past_due": 29, "tier": "early_warning"}).row(0, named=True)["template"]
            == "early_warning"
        )

    def test_at_most_once_in_180_days_across_nights(self):
        sent = history(("L0", "B0", "early_intervention", 100))
        assert decided({"days_past_due": 135, "tier": "default"}, past=sent).is_empty()

    def test_again_at_180_days_while_still_behind(self):
        sent = history(("L0", "B0", "early_intervention", 180))
        row = one(decided({"days_past_due": 215, "tier": "default"}, past=sent))
        assert (row["template"], row["status"]) == ("early_intervention", "generated")
        at_179 = history(("L0", "B0", "early_intervention", 179))
        assert decided({"days_past_due": 214, "tier": "default"}, past=at_179).is_empty()

    def test_any_form_of_the_notice_counts(self):
        sent = history(("L0", "B0", "early_intervention_cease", 30))
        assert decided({"days_past_due": 65, "care": ["cease_communication"]}, past=sent).is_empty()

    def test_the_180_day_rule_over_a_run_of_nights(self):
        """Night by night for a year, a loan 40 days behind and falling further: notices on
        day 0 and day 180 only, and in between only the imminent-default letter."""
        past = NONE
        sent = []
        for night in range(0, 365, 5):
            as_of = AS_OF + timedelta(days=night)
            dpd = 40 + night
            tier = "delinquent" if dpd < 60 else "imminent_default" if dpd < 90 else "default"
            out = decide(candidates({"days_past_due": dpd, "tier": tier}), past, as_of, RULES)
            made = out.filter(pl.col("status") == "generated")
            sent += [(night, t) for t in made["template"].to_list()]
            past = pl.concat([past, made.select(HISTORY_COLUMNS)])
        notices = [night for night, t in sent if t == "early_intervention"]
        assert notices == [0, 180, 360]
        assert [night for night, t in sent if t == "imminent_default"] == [20]


def simulated_book(seed: int, borrowers: int = 8, nights: int = 365) -> dict[str, list[int]]:
    """Nightly days past due (0 = current) of each loan of ``borrowers`` borrowers over
    ``nights``. A borrower's loans fall behind together, a few days apart, so their notices
    fall due around the same nights: two closed-end loans on the home (``-R1``, ``-R2``), a
    HELOC on it (``-H``) and a rented house (``-I``)."""
    import random

    rng = random.Random(seed)
    book: dict[str, list[int]] = {}
    for b in range(borrowers):
        starts, night = [], rng.randint(0, 40)
        while night < nights:
            length = rng.randint(10, 140)
            starts.append((night, length))
            night += length + rng.randint(5, 60)
        for suffix in ("R1", "R2", "H", "I"):
            shift = rng.randint(0, 4)
            dpd = [0] * nights
            for start, length in starts:
                for t in range(start + shift, min(start + shift + length, nights)):
                    dpd[t] = t - start - shift
            book[f"B{b}-{suffix}"] = dpd
    return book


def simulated_night(book: dict[str, list[int]], night: int, as_of: date) -> pl.DataFrame:
    """The flagged loans of one night: a courtesy letter wanted on days 25-29 (just before
    the notice), the imminent-default letter from day 60."""
    loans = []
    for loan_id, dpd in book.items():
        days = dpd[night]
        if days == 0:
            continue
        tier = (
            "early_warning"
            if 25 <= days < 30
            else "imminent_default"
            if 60 <= days < 90
            else "default"
            if days >= 90
            else "delinquent"
        )
        loans.append(
            {
                "loan_id": loan_id,
                "borrower_id": loan_id.split("-")[0],
                "tier": tier,
                "days_past_due": days,
                "oldest_unpaid_due_date": as_of - timedelta(days=days),
                "product": "heloc" if loan_id.endswith("-H") else "closed_end",
                "occupancy": "investment" if loan_id.endswith("-I") else "primary",
            }
        )
    return candidates(*loans)


class TestRequiredNoticesFirst:
    def test_a_courtesy_letter_the_night_before_does_not_hold_the_notice(self):
        sent = history(("L0", "B0", "early_warning", 1))
        row = one(decided({"days_past_due": 30}, past=sent))
        assert (row["template"], row["status"]) == ("early_intervention", "generated")

    def test_a_borrowers_notices_all_go_the_night_they_are_due(self):
        sent = history(("L0", "B", "early_intervention", 1))
        out = decided(
            {"loan_id": "L1", "borrower_id": "B", "days_past_due": 30},
            {"loan_id": "L2", "borrower_id": "B", "days_past_due": 31, "product": "heloc"},
            {"loan_id": "L3", "borrower_id": "B", "days_past_due": 32},
            past=sent,
        )
        assert out["status"].to_list() == ["generated"] * 3

    def test_a_year_of_nights_every_notice_out_by_day_45(self):
        """A year of nights over a book whose borrowers have several loans falling behind
        together, with courtesy letters wanted just before day 30: every required notice is
        out by day 45 of its delinquency (or within 180 days of the last notice, for
        Regulation X), and courtesy letters keep their own rules."""
        start = date(2026, 1, 1)
        book = simulated_book(seed=23)
        past, sent = NONE, []
        for night in range(365):
            as_of = start + timedelta(days=night)
            flagged = simulated_night(book, night, as_of)
            if flagged.is_empty():
                continue
            out = decide(flagged, past, as_of, RULES)
            made = out.filter(pl.col("status") == "generated")
            sent += [(night, *r) for r in made.select("loan_id", "template").iter_rows()]
            past = pl.concat([past, made.select(HISTORY_COLUMNS)])
        late = []
        for loan_id, dpd in book.items():
            family = ("heloc_counseling",) if loan_id.endswith("-H") else NOTICE_FAMILY
            if loan_id.endswith("-I"):
                continue
            notices = [t for t, loan, template in sent if loan == loan_id and template in family]
            for night, days in enumerate(dpd):
                if days < 45:
                    continue
                if loan_id.endswith("-H"):  # once per delinquency, by its day 45
                    ok = any(night - days <= t <= night for t in notices)
                else:  # by day 45, or a notice in the 180 days before (§1024.39(b)(1))
                    ok = any(night - 180 <= t <= night for t in notices)
                if not ok:
                    late.append((loan_id, night, days))
        assert late == []
        by_borrower: dict[str, list[tuple[int, str]]] = {}
        for night, loan, template in sent:
            by_borrower.setdefault(loan.split("-")[0], []).append((night, template))
        yielded = 0
        for letters in by_borrower.values():
            for night, template in letters:
                if template in REQUIRED:
                    continue
                before = [t for t, _ in letters if night - RULES.min_gap_days < t < night]
                tonight = [x for t, x in letters if t == night and x != template]
                assert not before and not tonight, (night, template, letters)
            yielded += sum(
                1
                for night, template in letters
                if template in NOTICE_FAMILY
                and any(
                    night - RULES.min_gap_days < t < night and x not in REQUIRED for t, x in letters
                )
            )
        assert yielded > 0, "no notice followed a courtesy letter within the gap: not tested"
        assert len(sent) > 100

    def test_settings_that_would_hold_a_required_notice_are_refused(self):
        with pytest.raises(SettingsError) as refused:
            parse_settings(
                {"letters": {"notice_every_days": 200, "heloc_counseling_every_days": 90}}
            )
        assert "notice_every_days = 200" in str(refused.value)
        assert "heloc_counseling_every_days = 90" in str(refused.value)
        fine = parse_settings({"letters": {"heloc_counseling_every_days": 14, "min_gap_days": 30}})
        assert fine.letters.min_gap_days == 30


# behind for 120 days, in a bankruptcy case filed 20 days ago
IN_CASE = {
    "days_past_due": 120,
    "tier": "default",
    "care": ["bankruptcy"],
    "bankruptcy_filed_date": AS_OF - timedelta(days=20),
}


class TestBankruptcy:
    def test_the_notice_follows_the_petition_whatever_was_sent_before(self):
        """Behind when the petition was filed, with a notice 80 days ago: the informational
        notice goes now (due by the petition's day 45), not 180 days after the last."""
        sent = history(("L0", "B0", "early_intervention", 80))
        row = one(decided(IN_CASE, past=sent))
        assert (row["template"], row["status"]) == ("early_intervention_bankruptcy", "generated")

    def test_a_notice_sent_in_the_case_counts(self):
        sent = history(("L0", "B0", "early_intervention_bankruptcy", 10))
        assert decided(IN_CASE, past=sent).is_empty()

    def test_nights_around_a_petition(self):
        """A loan 35 days behind and falling further, its borrower filing on night 50: the
        notice on night 0, the bankruptcy form by the petition's day 45, nothing else."""
        past, sent = NONE, []
        for night in range(120):
            as_of = AS_OF + timedelta(days=night)
            filed = AS_OF + timedelta(days=50)
            loan = {"days_past_due": 35 + night, "tier": "delinquent"}
            if night >= 50:
                loan |= {"care": ["bankruptcy"], "bankruptcy_filed_date": filed}
            out = decide(candidates(loan), past, as_of, RULES)
            made = out.filter(pl.col("status") == "generated")
            sent += [(night, t) for t in made["template"].to_list()]
            past = pl.concat([past, made.select(HISTORY_COLUMNS)])
        assert sent[0] == (0, "early_intervention")
        forms = [night for night, t in sent if t == "early_intervention_bankruptcy"]
        assert len(forms) == 1 and 50 <= forms[0] <= 95
        assert [t for _, t in sent if t in NOTICE_FAMILY] == [
            "early_intervention",
            "early_intervention_bankruptcy",
        ]


class TestSuppression:
    @pytest.mark.parametrize(
        ("loan", "reason"),
        [
            ({"care": ["deceased"]}, "deceased"),
            (
                {"care": ["bankruptcy", "cease_communication"]},
                "no early intervention notice is required",
            ),
            ({"care": ["bankruptcy"], "has_option": False}, "no loss-mitigation option"),
            ({"care": ["cease_communication"], "has_option": False}, "no loss-mitigation option"),
            (
                {"care": ["cease_communication"], "tier": "early_warning", "days_past_due": 5},
                "cease communication",
            ),
            ({"care": ["cease_communication"], "product": "heloc"}, "cease communication"),
            ({"care": ["bankruptcy"], "tier": "early_warning", "days_past_due": 5}, "bankruptcy"),
            (
                {"care": ["open_loss_mitigation"], "tier": "early_warning", "days_past_due": 5},
                "open loss-mitigation case",
            ),
            (
                {
                    "care": ["open_loss_mitigation"],
                    "occupancy": "investment",
                    "tier": "imminent_default",
                    "days_past_due": 65,
                },
                "open loss-mitigation case",
            ),
            ({"mailing_problem": "zip: missing"}, "held for review: zip: missing"),
        ],
    )
    def test_reason(self, loan, reason):
        row = one(decided(loan))
        assert row["status"] == "suppressed"
        assert reason in row["suppression_reason"]

    def test_open_case_does_not_stop_the_required_notice(self):
        row = one(decided({"care": ["open_loss_mitigation"]}))
        assert (row["template"], row["status"]) == ("early_intervention", "generated")

    def test_minimum_gap_between_a_borrowers_letters(self):
        courtesy = {"tier": "early_warning", "days_past_due": 3}
        sent = history(("OTHER", "B0", "early_warning", 10))
        row = one(decided(courtesy, past=sent))
        assert (
            row["status"] == "suppressed"
            and "at most one letter in 14 days" in row["suppression_reason"]
        )
        sent = history(("OTHER", "B0", "early_warning", 14))
        assert one(decided(courtesy, past=sent))["status"] == "generated"

    def test_one_courtesy_letter_per_borrower_per_night(self):
        out = decided(
            {"loan_id": "A", "borrower_id": "B", "tier": "early_warning", "days_past_due": 3},
            {
                "loan_id": "C",
                "borrower_id": "B",
                "tier": "imminent_default",
                "days_past_due": 65,
                "occupancy": "investment",
            },
        )
        made = out.filter(pl.col("status") == "generated")
        assert made["loan_id"].to_list() == ["C"]
        assert "the letter for loan C goes instead" in one(out, "A")["suppression_reason"]

    def test_courtesy_letters_yield_to_the_required_notices(self):
        """Every required notice of a borrower goes the same night; the courtesy letter waits."""
        out = decided(
            {"loan_id": "A", "borrower_id": "B", "tier": "early_warning", "days_past_due": 3},
            {"loan_id": "C", "borrower_id": "B", "days_past_due": 40},
            {"loan_id": "D", "borrower_id": "B", "product": "heloc", "days_past_due": 31},
            {"loan_id": "E", "borrower_id": "B", "days_past_due": 30},
        )
        made = out.filter(pl.col("status") == "generated")
        assert sorted(made["loan_id"].to_list()) == ["C", "D", "E"]
        assert "the required notice for loan C goes first" in one(out, "A")["suppression_reason"]

    def test_rerun_gives_the_same_ids(self):
        first = decided({}, {"tier": "early_warning", "days_past_due": 3})
        again = decided({}, {"tier": "early_warning", "days_past_due": 3})
        assert first.equals(again)
        assert first["letter_id"].n_unique() == 2
        assert one(first)["letter_id"] == letter_id(AS_OF, "B0", "L0", "early_intervention")

    @settings(max_examples=50, deadline=None)
    @given(
        st.lists(
            st.tuples(st.text(min_size=1), st.text(min_size=1), st.sampled_from(LETTER_TEMPLATES)),
            max_size=20,
        )
    )
    def test_ids_made_at_once_are_the_ids_made_one_by_one(self, keys):
        frame = pl.DataFrame(keys, schema=["borrower_id", "loan_id", "template"], orient="row")
        assert letter_ids(frame, AS_OF).to_list() == [letter_id(AS_OF, *key) for key in keys]

    @settings(max_examples=50, deadline=None)
    @given(st.dates(min_value=date(1900, 1, 1)), st.text(min_size=1))
    def test_an_id_names_its_night(self, night, key):
        assert night_of(letter_id(night, key, key, "early_warning")) == night

    def test_an_id_of_another_form_names_no_night(self):
        assert [night_of(x) for x in ("manual-7", "L20261332-abc", "L2026112-abc", "")] == [
            None
        ] * 4


# --------------------------------------------------------------------------- names and addresses

ADDRESS = {
    "first_name": "Ana",
    "last_name": "Núñez",
    "address_line1": "12 Elm St",
    "address_line2": "Apt #4",
    "city": "Fresno",
    "state": "CA",
    "zip": "93701",
}

# Names, addresses and pieces of them on which a check could go either way: words of
# statements and templates, separators, other scripts' look-alikes, case-folding letters
# (the dotless and dotted i, the long s, the Kelvin sign), spaces that are not " ".
ADDRESS_TEXTS = ["O'Neil", "Mary-Jo", "Ångström", "São Paulo", "ZZ", "ca", "93701-1234", "9370"]
ADDRESS_FRAGMENTS = [
    "drop table",
    "DROP  TABLE",
    "delete from",
    "Insert Into",
    "union select",
    "UNION ALL SELECT",
    "drop",
    " table",
    "--",
    "-",
    ";",
    "/*",
    "*/",
    "{{",
    "{%",
    "%}",
    "#}",
    "#set",
    "#text",
    "#",
    "<",
    ">",
    "\\",
    "$",
    "_",
    "@",
    "`",
    "*",
    "ı",
    "İ",
    "ſ",
    "\u212a",
    "\u00a0",
    "\u00ad",
    "\u200b",
    "²",
    "½",
    "Ñ",
    "ñ",
    "é",
    "12",
    "St",
    " ",
    "\t",
    "\n",
    "\u202e",
]


class TestMailingCheck:
    @pytest.mark.parametrize(
        ("field", "value", "problem"),
        [
            ("first_name", "<b>Bob</b>", "first_name: markup (< or >)"),
            ("last_name", "Tables'); DROP TABLE loans;--", "last_name: SQL-like text"),
            ("last_name", "Smith; drop table x", "last_name: SQL-like text"),
            ("first_name", "{{ 7*7 }}", "first_name: template syntax"),
            ("last_name", "#set page(width: 1cm)", "last_name: template syntax"),
            ("last_name", "Lee \\ Back", "last_name: a backslash"),
            ("first_name", "$Dollar_*Star*", "first_name: typesetting markup ({ } $ * _ @ `)"),
            ("last_name", "@at {brace}", "last_name: typesetting markup ({ } $ * _ @ `)"),
            ("first_name", "Ana\x00", "first_name: a control character"),
            ("address_line2", "Apt 4\nRear", "address_line2: a control character"),
            ("address_line1", "\u202eTS mlE 21", "address_line1: a control character"),
            ("address_line1", "  ", "address_line1: missing"),
            ("address_line1", "12-14", "address_line1: malformed: no letters"),
            ("city", None, "city: missing"),
            ("city", "90210", "city: malformed: no letters"),
            ("state", "California", "state: malformed: 'California' is not a 2-letter US state"),
            ("state", "ca", "state: malformed: 'ca' is not a 2-letter US state"),
            ("state", "ZZ", "state: malformed: 'ZZ' is not a 2-letter US state"),
            ("zip", "9370", "zip: malformed: '9370' is not 5 or 5+4 digits"),
            ("zip", "93701-12", "zip: malformed: '93701-12' is not 5 or 5+4 digits"),
            ("zip", "", "zip: missing"),
        ],
    )
    def test_holds_with_the_field_and_the_problem(self, field, value, problem):
        assert mailing_problem({**ADDRESS, field: value}) == problem

    def test_a_letter_needs_a_name(self):
        assert mailing_problem({**ADDRESS, "first_name": None, "last_name": " "}) == "name: missing"

    @pytest.mark.parametrize(
        "name",
        ["O'Neil", "Mary-Jo", "Núñez", "Ångström", "D'Angelo", "O’Brien", "de la Cruz Jr."],
    )
    def test_ordinary_names_print(self, name):
        assert mailing_problem({**ADDRESS, "first_name": name, "last_name": name}) is None
        assert mailing_problem({**ADDRESS, "zip": "93701-1234", "address_line2": None}) is None

    @given(
        st.lists(
            st.text(st.characters(categories=["L", "M"]), min_size=1, max_size=12),
            min_size=1,
            max_size=4,
        ),
        st.sampled_from([" ", "-", "'", "’", ". "]),
    )
    def test_ordinary_names_are_never_held(self, parts, joiner):
        name = joiner.join(parts)
        assert mailing_problem({**ADDRESS, "first_name": name, "last_name": name}) is None

    @settings(max_examples=500, deadline=None)
    @given(
        st.lists(
            # A good address with one or two of its parts replaced: text made of the
            # fragments, alone or after a word.
            st.dictionaries(
                st.sampled_from(MAILING_FIELDS),
                st.one_of(
                    st.none(),
                    st.sampled_from(ADDRESS_TEXTS),
                    st.tuples(
                        st.sampled_from(["", "Elm ", "12 Elm St "]),
                        st.lists(
                            st.one_of(
                                st.sampled_from(ADDRESS_FRAGMENTS),
                                st.text(st.characters(max_codepoint=0x2FF), max_size=3),
                                st.characters(
                                    categories=["Cc", "Cf", "Co", "Cn", "Z", "M", "N", "S"]
                                ),
                            ),
                            min_size=1,
                            max_size=5,
                        ).map("".join),
                    ).map("".join),
                ),
                max_size=2,
            ).map(lambda replaced: {**ADDRESS, **replaced}),
            min_size=1,
            max_size=20,
        )
    )
    def test_the_whole_frame_at_once_finds_what_each_row_alone_does(self, rows):
        frame = pl.DataFrame(rows, schema={field: pl.String for field in MAILING_FIELDS})
        assert mailing_problems(frame).to_list() == [mailing_problem(row) for row in rows]

    def test_the_decision_holds_the_letter_for_review(self):
        row = one(decided({"mailing_problem": "last_name: markup (< or >)"}))
        assert row["status"] == "suppressed"
        assert row["suppression_reason"] == "held for review: last_name: markup (< or >)"


# --------------------------------------------------------------------------- rendering

SETTINGS = Settings()
OPTIONS = [
    {
        "code": "repayment_plan",
        "name": "Repayment plan",
        "description": "Catch up over several months.",
        "terms": "6 monthly payments of $600.00",
        "notes": [],
    },
    {
        "code": "forbearance",
        "name": "Forbearance",
        "description": "A pause.",
        "terms": "",
        "notes": [],
    },
]
HOSTILE = {
    "first_name": 'Zoë "Z" <script>alert(1)</script>',
    "last_name": "O'Brien {{ 7*7 }} #set \\ $x$ *bold* {% raw %}",
    "address_line1": "12 Elm St #4 {braces} [link](x) <b>",
    "address_line2": "c/o Ñandú & Sons\n# not a heading",
}


def row(template: str, language: str, **overrides) -> dict:
    base = {
        "letter_id": f"LT-{template}-{language}",
        "template": template,
        "language": language,
        "loan_id": "LN-2024-000123",
        "first_name": "Ana",
        "last_name": "Núñez",
        "address_line1": "12 Elm St",
        "address_line2": None,
        "city": "Fresno",
        "state": "CA",
        "zip": "93701",
        "days_past_due": 40,
        "amount_past_due": D("812.40"),
        "oldest_unpaid_due_date": date(2026, 10, 11),
        "next_due_date": date(2026, 12, 11),
        "installment_amount": D("400.00"),
        "next_change_amount": D("520.00"),
        "next_change_date": date(2027, 1, 1),
        "product": "closed_end",
        "occupancy": "primary",
        "acquired_in_default": False,
    }
    return {**base, **overrides}


def payload(template: str, language: str, collector: bool = False, **overrides) -> dict:
    return render.letter_payload(
        row(template, language, **overrides),
        OPTIONS,
        render.servicer_block(SETTINGS, language),
        AS_OF,
        collector_for_every_loan=collector,
    )


ALL = [(t, lang) for t in LETTER_TEMPLATES for lang in ("en", "es")]


class TestTemplates:
    @pytest.mark.parametrize(("template", "language"), ALL)
    def test_renders_and_passes_its_checklist(self, template, language):
        doc = render.compose(payload(template, language))
        text = render.document_text(doc)
        assert (
            check(
                text, template, language, render.checklist(), payload(template, language)["checks"]
            )
            == []
        )
        assert "LN-2024-000123" not in text and "0123" in text
        assert "Ana Núñez" in text

    @pytest.mark.parametrize(("template", "language"), ALL)
    def test_checklist_fails_without_an_element(self, template, language):
        spec = render.checklist()[template]["required"]
        doc = render.compose(payload(template, language))
        text = render.document_text(doc)
        checks = payload(template, language)["checks"]
        for element in spec:
            stripped = text
            for phrase in element[language]:
                stripped = re.sub(
                    re.escape(phrase.format(**checks)), "", stripped, flags=re.IGNORECASE
                )
            assert f"missing {element['id']}" in check(
                stripped, template, language, render.checklist(), checks
            )

    def test_forbidden_phrases(self):
        checks = payload("early_intervention", "en")["checks"]
        text = render.document_text(render.compose(payload("early_intervention", "en")))
        assert "forbidden phrase 'HAMP'" in check(
            text + " Apply for HAMP.", "early_intervention", "en", render.checklist(), checks
        )
        courtesy = render.document_text(render.compose(payload("early_warning", "en")))
        assert any(
            "foreclosure" in p
            for p in check(
                courtesy + " foreclosure", "early_warning", "en", render.checklist(), checks
            )
        )

    def test_bankruptcy_notice_asks_for_no_payment(self):
        text = render.document_text(render.compose(payload("early_intervention_bankruptcy", "en")))
        assert "not a request for payment" in text
        assert "$812.40" not in text and "bring it current" not in text

    def test_early_warning_mentions_the_payment_rise_calmly(self):
        text = render.document_text(
            render.compose(
                payload("early_warning", "en", days_past_due=0, oldest_unpaid_due_date=None)
            )
        )
        assert "from $400.00 to $520.00 with the payment due January 1, 2027" in text
        assert "not a notice that anything is owed" in text
        es = render.document_text(
            render.compose(
                payload("early_warning", "es", days_past_due=0, oldest_unpaid_due_date=None)
            )
        )
        assert "1 de enero de 2027" in es

    @pytest.mark.parametrize(
        ("language", "heading", "invite"),
        [
            ("en", "Options that may be available to you", "call us at (800) 555-0142"),
            ("es", "Opciones que pueden estar a su alcance", "llámenos al (800) 555-0142"),
        ],
    )
    def test_a_current_borrower_offered_nothing_is_invited_to_call(self, language, heading, invite):
        """No empty options section: the courtesy letter to a current borrower with no
        option offered invites contact, and passes its checklist."""
        letter = render.letter_payload(
            row("early_warning", language, days_past_due=0, oldest_unpaid_due_date=None),
            [],
            render.servicer_block(SETTINGS, language),
            AS_OF,
            collector_for_every_loan=False,
        )
        text = render.document_text(render.compose(letter))
        assert heading not in text and invite in text.replace("\u00a0", " ")
        assert check(text, "early_warning", language, render.checklist(), letter["checks"]) == []
        with_options = text_of(payload("early_warning", language))
        assert heading in with_options

    def test_a_letter_failing_its_checklist_is_not_written(self, tmp_path):
        letter = payload("early_intervention", "en")
        letter["checks"]["team_phone"] = "(999) 000-0000"
        result = render.render(letter, tmp_path)
        assert result["problems"] == ["missing team_phone"] and result["pdf_path"] is None
        assert list(tmp_path.iterdir()) == []


def text_of(letter: dict) -> str:
    return render.document_text(render.compose(letter))


def passes(letter: dict, text: str | None = None) -> list[str]:
    """The checklist's problems with a letter (its own text unless ``text`` is given)."""
    return check(
        text_of(letter) if text is None else text,
        letter["template"],
        letter["language"],
        render.checklist(),
        letter["checks"],
        letter["facts"],
    )


CEASE_REMEDY = {
    "en": "We have the right to invoke foreclosure based on the terms of your mortgage contract.",
    "es": "Según los términos de su contrato hipotecario, tenemos derecho a iniciar una ejecución hipotecaria.",
}


class TestCeaseForm:
    @pytest.mark.parametrize("language", ["en", "es"])
    def test_states_the_remedy_of_foreclosure_and_asks_for_no_payment(self, language):
        letter = payload("early_intervention_cease", language)
        text = text_of(letter)
        assert CEASE_REMEDY[language] in text
        assert "$812.40" not in text
        assert "missing foreclosure_remedy" in passes(
            letter, text.replace(CEASE_REMEDY[language], "")
        )
        assert "forbidden phrase 'must pay'" in passes(letter, text + " You must pay today.")


def repayment(months: int, **row) -> dict:
    return {
        "option_code": "repayment_plan",
        "rank": 10,
        "plan_months": months,
        "plan_payment": D("600.00"),
        "plan_last_payment": D("612.40"),
        "amount": D("812.40"),
        **row,
    }


class TestTrueForThisLoan:
    CATALOGUE = load_catalogue(None)

    def entries(self, rows: list[dict], language: str = "en", behind: int | None = 40) -> list:
        return render.option_entries(rows, self.CATALOGUE, language, "CA", 4, behind)

    @pytest.mark.parametrize("language", ["en", "es"])
    def test_the_120_day_rule_only_where_it_applies(self, language):
        joins, exempt = {
            "en": ("unless we join a foreclosure", "does not apply"),
            "es": ("salvo que nos sumemos a una ejecución", "no se aplica"),
        }[language]

        def said(**loan) -> str:
            return text_of(payload("imminent_default", language, days_past_due=65, **loan))

        covered = said()
        assert joins in covered and exempt not in covered and "120" in covered
        for loan in (
            {"product": "heloc"},
            {"occupancy": "second_home"},
            {"occupancy": "investment"},
        ):
            text = said(**loan)
            assert exempt in text and joins not in text, loan
        assert "home equity line of credit" in said(product="heloc") or language == "es"
        assert "principal residence" in said(occupancy="investment") or language == "es"

    def test_the_streamlined_plan_note_only_where_it_holds(self):
        note = render.STREAMLINED_NOTE["en"]
        assert self.entries([repayment(6)], behind=89)[0]["notes"] == [note]
        assert self.entries([repayment(7)], behind=40)[0]["notes"] == []
        assert self.entries([repayment(3)], behind=90)[0]["notes"] == []
        assert self.entries([repayment(3)], behind=None)[0]["notes"] == []
        assert self.entries([repayment(1)], behind=10)[0]["notes"] == []  # not a plan
        assert self.entries([repayment(2)], "es")[0]["notes"] == [render.STREAMLINED_NOTE["es"]]

    def test_behind_at_the_plans_first_payment(self):
        """65 days past due tonight with 3 installments unpaid: 91 days by the next due date,
        when a plan agreed now would start."""
        loan = {"oldest_unpaid_due_date": date(2026, 9, 16), "next_due_date": date(2026, 12, 16)}
        assert render.days_behind_at_next_due(loan) == 91
        assert render.days_behind_at_next_due({**loan, "oldest_unpaid_due_date": None}) is None

    @pytest.mark.parametrize(
        ("language", "one_payment", "one_month"),
        [
            ("en", "a single catch-up payment of $600.00", "up to 1 month at a time"),
            ("es", "un solo pago para ponerse al día de $600.00", "hasta 1 mes a la vez"),
        ],
    )
    def test_one_payment_is_not_a_plan_of_payments(self, language, one_payment, one_month):
        pause = {**repayment(1), "option_code": "forbearance", "rank": 20}
        plan, forbearance = self.entries([repayment(1), pause], language)
        assert plan["terms"].startswith(one_payment) and "1 monthly" not in plan["terms"]
        assert forbearance["terms"] == one_month
        assert self.entries([repayment(4)], language)[0]["terms"].startswith("4 ")

    @pytest.mark.parametrize(
        ("language", "equal", "uneven"),
        [
            ("en", "4 monthly payments of $600.00", "4 monthly payments of $600.00, the last $450.00"),
            ("es", "4 pagos mensuales de $600.00", "4 pagos mensuales de $600.00; el último, de $450.00"),
        ],
    )  # fmt: skip
    def test_a_plan_names_its_last_payment_only_when_it_differs(self, language, equal, uneven):
        even = {**repayment(4), "plan_last_payment": D("600.00")}
        assert self.entries([even], language)[0]["terms"] == equal
        last = {**repayment(4), "plan_last_payment": D("450.00")}
        assert self.entries([last], language)[0]["terms"] == uneven

    @pytest.mark.parametrize(
        ("language", "current_words", "late_words"),
        [
            ("en", "before a payment is missed", "as soon as you can"),
            ("es", "antes de atrasarse.", "antes de atrasarse más"),
        ],
    )
    def test_the_courtesy_letter_to_a_borrower_already_late(
        self, language, current_words, late_words
    ):
        late = text_of(payload("early_warning", language, days_past_due=20))
        assert current_words not in late and late_words in late
        current = text_of(
            payload("early_warning", language, days_past_due=0, oldest_unpaid_due_date=None)
        )
        assert current_words in current and late_words not in current

    @pytest.mark.parametrize(
        "template", ["early_intervention", "heloc_counseling", "imminent_default"]
    )
    @pytest.mark.parametrize(
        ("language", "amount", "fees"),
        [
            ("en", "$812.40 in scheduled payments is past due", "does not include late fees"),
            (
                "es",
                "Hay $812.40 en pagos programados vencidos",
                "no incluye cargos por pago atrasado",
            ),
        ],
    )
    def test_the_amount_past_due_says_fees_are_not_in_it(self, template, language, amount, fees):
        letter = payload(template, language)
        text = text_of(letter)
        assert amount in text and fees in text
        assert "missing fees_stated" in passes(letter, text.replace(fees, ""))

    @pytest.mark.parametrize("template", LETTER_TEMPLATES)
    def test_spanish_letters_name_the_team_in_spanish(self, template):
        letter = payload(template, "es")
        html = (
            render._html_env()
            .get_template("letters/layout.html.j2")
            .render(d=render.compose(letter))
        )
        for text in (text_of(letter), html):
            assert SETTINGS.servicer.team_name not in text
            assert SETTINGS.servicer.team_name_es in text
        assert SETTINGS.servicer.team_name in text_of(payload(template, "en"))


FDCPA = {
    "en": "This communication is from a debt collector.",
    "es": "Esta comunicación proviene de un cobrador de deudas.",
}
ROSENTHAL = {"en": "Rosenthal Fair Debt Collection Practices Act", "es": "Ley Rosenthal"}


class TestDebtCollection:
    def test_which_letters_carry_which_notice(self):
        r = row("early_warning", "en")
        notices = render.collection_notices
        assert notices("early_warning", r, False) == {"debt_collector": False, "rosenthal": False}
        assert notices("early_warning", r, True) == {"debt_collector": True, "rosenthal": True}
        assert notices("early_warning", {**r, "acquired_in_default": True}, False)["rosenthal"]
        assert notices("early_warning", {**r, "state": "NV"}, True) == {
            "debt_collector": True,
            "rosenthal": False,
        }
        assert not any(notices("early_intervention_bankruptcy", r, True).values())

    @pytest.mark.parametrize(("template", "language"), ALL)
    def test_every_letter_but_the_bankruptcy_form_carries_them(self, template, language):
        letter = payload(template, language, collector=True)
        text = text_of(letter)
        carries = template != "early_intervention_bankruptcy"
        assert (FDCPA[language] in text, ROSENTHAL[language] in text) == (carries, carries)
        assert passes(letter) == []
        nevada = text_of(payload(template, language, collector=True, state="NV"))
        assert (FDCPA[language] in nevada, ROSENTHAL[language] in nevada) == (carries, False)
        assert FDCPA[language] not in text_of(payload(template, language))

    def test_the_checklist_enforces_both(self):
        letter = payload("imminent_default", "en", collector=True)
        text = text_of(letter)
        assert "missing fdcpa_disclosure" in passes(letter, text.replace(FDCPA["en"], ""))
        rosenthal = "The state Rosenthal Fair Debt Collection Practices Act"
        assert "missing rosenthal_notice" in passes(letter, text.replace(rosenthal, ""))
        not_collector = payload("imminent_default", "en")
        assert "fdcpa_disclosure where it does not apply" in passes(not_collector, text)
        bankruptcy = payload("early_intervention_bankruptcy", "en", collector=True)
        assert any(
            "forbidden phrase" in p for p in passes(bankruptcy, text_of(bankruptcy) + FDCPA["en"])
        )


NOTED = [
    {**OPTIONS[0], "notes": ["Plan note one.", "Plan note two."]},
    {**OPTIONS[1], "notes": ["Forbearance note."]},
]


def noted(template: str = "imminent_default", language: str = "en") -> dict:
    """A letter whose options carry several small-print notes."""
    return render.letter_payload(
        row(template, language),
        NOTED,
        render.servicer_block(SETTINGS, language),
        AS_OF,
        collector_for_every_loan=False,
    )


class TestSmallPrint:
    def test_a_run_of_items_is_one_list_and_notes_stay_with_their_item(self):
        found = blocks("- A :: one\n~ note of A\n~ another\n- B :: two\n~ note of B\n\n~ alone")
        assert found == [
            {
                "kind": "list",
                "items": [
                    {"lead": "A", "text": "one", "notes": ["note of A", "another"]},
                    {"lead": "B", "text": "two", "notes": ["note of B"]},
                ],
            },
            {"kind": "small", "text": "alone"},
        ]

    def test_html_has_one_list_with_each_note_under_its_option(self):
        html = (
            render._html_env()
            .get_template("letters/layout.html.j2")
            .render(d=render.compose(noted("early_warning")))
        )
        assert html.count("<ul>") == 1  # the options, the courtesy letter's only list
        items = re.findall(r"<li>(.*?)</li>", html, re.DOTALL)
        assert [re.findall(r'<p class="small">(.*?)</p>', i) for i in items] == [
            ["Plan note one.", "Plan note two."],
            ["Forbearance note."],
        ]

    def test_pdf_notes_are_blocks_of_their_own_under_their_option(self, tmp_path):
        (result,) = render.render_all([noted()], tmp_path, workers=1)
        lines = [
            " ".join(line.split())
            for page in PdfReader(result["pdf_path"]).pages
            for line in page.extract_text().splitlines()
        ]
        at = {n: lines.index(n) for n in ("Plan note one.", "Plan note two.", "Forbearance note.")}
        forbearance = next(i for i, line in enumerate(lines) if line.startswith("• Forbearance:"))
        assert at["Plan note one."] < at["Plan note two."] < forbearance < at["Forbearance note."]


def pages_text(pdf_path: str) -> list[list[str]]:
    """Each page's lines, spaces folded."""
    return [
        [" ".join(line.split()) for line in page.extract_text().splitlines()]
        for page in PdfReader(pdf_path).pages
    ]


class TestSignatureAndPages:
    @pytest.mark.parametrize(("template", "language"), ALL)
    def test_every_letter_is_signed_by_the_configured_signer(self, template, language):
        settings = Settings.model_validate(
            {
                "servicer": {
                    "signer_name": "Pat Rivera",
                    "signer_title": "Vice President",
                    "signer_title_es": "Vicepresidenta",
                }
            }
        )
        letter = render.letter_payload(
            row(template, language),
            OPTIONS,
            render.servicer_block(settings, language),
            AS_OF,
            collector_for_every_loan=False,
        )
        title = "Vicepresidenta" if language == "es" else "Vice President"
        closing = render.LABELS[language]["closing"]
        assert f"{closing}\nPat Rivera\n{title}" in text_of(letter)
        assert passes(letter) == []
        assert "missing signature" in passes(letter, text_of(letter).replace("Pat Rivera", ""))

    def test_pages_after_the_first_name_the_borrower_and_the_loan(self, tmp_path):
        (result,) = render.render_all([noted()], tmp_path, workers=1)
        first, *others = pages_text(result["pdf_path"])
        header = "Ana Núñez · Loan account ending in 0123"
        assert others and all(page[0] == header for page in others)
        assert header not in first
        letter = noted()
        assert "missing page_header" in passes(letter, text_of(letter).replace(header, ""))

    def test_signature_block_is_whole_and_last(self, tmp_path):
        (result,) = render.render_all([noted()], tmp_path, workers=1)
        last = pages_text(result["pdf_path"])[-1]
        at = last.index("Sincerely,")
        assert last[at + 1 : at + 4] == [
            "Dana Whitfield",
            "Manager, Homeowner Assistance",
            "Golden Gate Home Lending Servicing",
        ]

    def test_the_footers_web_address_never_breaks(self, tmp_path):
        results = render.render_all([payload(t, lang) for t, lang in ALL], tmp_path, workers=1)
        website = SETTINGS.servicer.website
        for result in results:
            for page in pages_text(result["pdf_path"]):
                footer = page[-3:]  # the footer's lines and the page number
                assert any(website in line for line in footer), (result["letter_id"], footer)


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[tuple[str, str], dict]:
    """Every template in both languages, for a borrower whose name and address are hostile."""
    folder = tmp_path_factory.mktemp("letters")
    results = render.render_all([payload(t, lang, **HOSTILE) for t, lang in ALL], folder, workers=1)
    return {(t, lang): r for (t, lang), r in zip(ALL, results, strict=True)}


class TestOutput:
    def test_every_template_gives_a_pdf_and_html(self, written):
        for key, result in written.items():
            assert result["problems"] == [], key
            assert Path(result["pdf_path"]).stat().st_size > 5000
            assert Path(result["pdf_path"]).stat().st_mode & 0o077 == 0
            assert result["pages"] == len(PdfReader(result["pdf_path"]).pages)

    def test_pdf_text_holds_the_required_elements(self, written):
        for (template, language), result in written.items():
            text = "\n".join(page.extract_text() for page in PdfReader(result["pdf_path"]).pages)
            checks = payload(template, language, **HOSTILE)["checks"]
            problems = check(text, template, language, render.checklist(), checks)
            # the page header is printed on the pages after the first only
            expected = [] if result["pages"] > 1 else ["missing page_header"]
            assert problems == expected, (template, language, problems)
            assert "LN-2024-000123" not in text

    def test_hostile_names_render_literally_in_pdf(self, written):
        result = written[("early_intervention", "en")]
        text = " ".join(
            " ".join(page.extract_text() for page in PdfReader(result["pdf_path"]).pages).split()
        )
        for value in (
            'Zoë "Z" <script>alert(1)</script>',
            "O'Brien {{ 7*7 }} #set \\ $x$ *bold* {% raw %}",
            "12 Elm St #4 {braces} [link](x) <b>",
            "c/o Ñandú & Sons # not a heading",
        ):
            assert value in text
        assert "49" not in text

    def test_hostile_names_are_escaped_in_html(self, written):
        html = Path(written[("early_intervention", "es")]["html_path"]).read_text(encoding="utf-8")
        assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "{{ 7*7 }}" in html and "49" not in html
        assert "O&#39;Brien" in html and "&lt;b&gt;" in html
        assert "c/o Ñandú &amp; Sons # not a heading" in html

    def test_fans_out_over_processes(self, tmp_path):
        letters = [dict(payload("early_warning", "en"), letter_id=f"P{i:04d}") for i in range(220)]
        results = render.render_all(letters, tmp_path, workers=2)
        assert [r["letter_id"] for r in results] == [f"P{i:04d}" for i in range(220)]
        assert len(list(tmp_path.glob("*.pdf"))) == 220
        assert not list(tmp_path.glob(".*"))


def small_night(tmp_path: Path, settings: Settings, **landing_files: str) -> tuple[Night, dict]:
    """A night over the two-loan landing folder of ``tests.landing`` (one payment on L1),
    up to its letters; returns the night and the letters step's summary."""
    from tests.landing import landing, ledger

    folder = landing(
        tmp_path / "in", {"p.csv": ledger("T1,L1,2024-03-01,250.00,payment,,")}, **landing_files
    )
    n = Night(
        data=folder,
        db=tmp_path / "wh.duckdb",
        out=tmp_path / "out",
        as_of=date(2024, 6, 3),
        run_id="x",
    )
    ingest_step.run(n)
    delinquency_step.run(n, settings)
    flags_step.run(n, settings)
    options_step.run(n, settings)
    return n, letters_step.run(n, settings)


def test_dry_run_records_decisions_without_letters(tmp_path):
    _, made = small_night(tmp_path, Settings.model_validate({"letters": {"render": False}}))
    assert made["generated"] == 0 and made["suppressed"] == 2
    assert made["suppressed_by_reason"] == {"dry run": made["suppressed"]}
    assert not list((tmp_path / "out").rglob("*.pdf"))


def test_a_loan_acquired_in_default_gets_the_debt_collectors_notices(tmp_path):
    """The loans feed's optional acquired_in_default column reaches the letter: the FDCPA
    disclosure and, to a California borrower, the Rosenthal notice, in the letter's language."""
    from tests.landing import LOANS

    header, first, second = LOANS.splitlines()
    loans = f"{header},acquired_in_default\n{first},true\n{second},\n"
    n, made = small_night(tmp_path, Settings(), loans=loans)
    assert made["generated"] == 2
    con = warehouse.connect(n.db, read_only=True)
    paths = dict(con.execute("SELECT loan_id, pdf_path FROM letters").fetchall())
    con.close()
    sent = {
        loan: " ".join(" ".join(p.extract_text() for p in PdfReader(path).pages).split())
        for loan, path in paths.items()
    }
    assert FDCPA["es"] in sent["L1"] and ROSENTHAL["es"] in sent["L1"]
    assert FDCPA["en"] not in sent["L2"] and "Rosenthal" not in sent["L2"]


def test_a_hostile_name_is_held_and_never_mailed(tmp_path):
    """The generator's hostile names reach the letters step: the letter is held for the review
    team with the field and the problem, and the mail manifest does not list it."""
    from tests.landing import BORROWERS

    hostile = BORROWERS.replace("B2,Ann,O'Brien", 'B2,<b>Bob</b>,"Tables\'); DROP TABLE loans;--"')
    n, made = small_night(tmp_path, Settings(), borrowers=hostile)
    assert made["generated"] == 1 and made["suppressed_by_reason"] == {"held for review": 1}
    con = warehouse.connect(n.db, read_only=True)
    held = con.execute(
        "SELECT status, suppression_reason FROM letters WHERE loan_id = 'L2'"
    ).fetchall()
    con.close()
    assert held == [("suppressed", "held for review: first_name: markup (< or >)")]
    manifest = (n.night_dir / "mail_manifest.csv").read_text(encoding="utf-8")
    assert "Bob" not in manifest and "Núñez" in manifest


def test_a_notice_with_no_option_to_offer_shows_examples():
    """A loan whose options are all held back (an open case) still gets its Regulation X
    notice, with examples of the options the servicer offers; a courtesy letter does not
    make them up."""
    from lienwatch.catalogue import load_catalogue

    catalogue = load_catalogue(None)
    shown = render.examples_for("early_intervention", [], catalogue, "es", 3)
    assert len(shown) == 3 and all(o["name"] and not o["terms"] for o in shown)
    assert "housing_counseling" not in [o["code"] for o in shown]
    assert render.examples_for("early_warning", [], catalogue, "en", 3) == []
    own = [{"code": "x", "name": "X", "description": "d", "terms": "", "notes": []}]
    assert render.examples_for("early_intervention", own, catalogue, "en", 3) == own


class TestGoLive:
    """The first night meets a servicer's earlier letters only through the letter_history
    feed; without it the cadence cannot be known, so only the required notices go."""

    def test_without_a_history_only_the_required_notices_go(self):
        rules = dataclasses.replace(RULES, history_known=False)
        out = decide(
            candidates(
                {"loan_id": "A", "tier": "early_warning", "days_past_due": 3},
                {"loan_id": "C", "days_past_due": 40},
                {"loan_id": "D", "tier": "imminent_default", "days_past_due": 65,
                 "occupancy": "investment"},
            ),
            NONE,
            AS_OF,
            rules,
        )  # fmt: skip
        assert one(out, "C")["status"] == "generated"
        for held in ("A", "D"):
            assert one(out, held)["status"] == "suppressed"
            assert one(out, held)["suppression_reason"] == GO_LIVE_HOLD

    def test_the_feed_carries_the_cadence_from_the_first_night(self, tmp_path):
        """A notice the feed says went 9 days ago is not sent again, and the minimum gap
        holds the courtesy letter after it; the night says the history is known."""
        sent = "loan_id,template,sent_date\nL1,early_intervention,2024-05-25\n"
        n, made = small_night(tmp_path, Settings(), letter_history=sent)
        assert made["letter_history_known"] is True
        con = warehouse.connect(n.db, read_only=True)
        went = con.execute(
            "SELECT loan_id, template, status, suppression_reason FROM letters ORDER BY loan_id"
        ).fetchall()
        con.close()
        assert went[1] == ("L2", "heloc_counseling", "generated", None)
        assert went[0][:3] == ("L1", "imminent_default", "suppressed")
        assert went[0][3] == (
            "minimum gap: letter sent before lienwatch (early_intervention) sent on 2024-05-25; "
            "at most one letter in 14 days"
        )

    def test_without_the_feed_the_night_says_so(self, tmp_path):
        _, made = small_night(tmp_path, Settings())
        assert made["letter_history_known"] is False
        assert made["generated"] == 2  # both loans' notices are required ones

    def test_a_bad_history_row_is_quarantined_with_its_reason(self, tmp_path):
        sent = (
            "loan_id,template,sent_date\n"
            "L1,early_intervention,2024-05-20\n"
            "L1,postcard,2024-05-21\n"
            "L9,early_warning,2024-05-22\n"
        )
        n, _ = small_night(tmp_path, Settings(), letter_history=sent)
        con = warehouse.connect(n.db, read_only=True)
        kept = con.execute("SELECT count(*) FROM letter_history").fetchall()[0][0]
        reasons = con.execute(
            "SELECT row_number, column_name, error FROM quarantine WHERE feed = 'letter_history' "
            "ORDER BY row_number"
        ).fetchall()
        con.close()
        assert kept == 1
        # rows numbered from the first after the header
        assert [(row, column) for row, column, _ in reasons] == [(2, "template"), (3, "loan_id")]
        assert "loan_id is not a known loan" in reasons[1][2]
