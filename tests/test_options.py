"""Hardship options: each option's yes and no, the computed terms, the exclusions, the catalogue."""

from __future__ import annotations

import copy
from datetime import date
from decimal import Decimal as D
from pathlib import Path

import polars as pl
import pytest

from lienwatch.catalogue import load_catalogue
from lienwatch.errors import LienwatchError
from lienwatch.letters import option_entries
from lienwatch.night import Night
from lienwatch.steps import delinquency as delinquency_step
from lienwatch.steps import flags as flags_step
from lienwatch.steps import ingest as ingest_step
from lienwatch.steps import options as options_step
from tests.helpers import (
    BUNDLED,
    CATALOGUE,
    NO_CASES,
    RAW,
    loss_mit_cases,
    option_inputs,
    payment_changes,
)
from transforms.options import CatalogueError, evaluate, parse_catalogue

AS_OF = date(2026, 11, 20)


def option_row(code: str, cases: pl.DataFrame = NO_CASES, catalogue=CATALOGUE, **overrides) -> dict:
    found = evaluate(option_inputs(overrides), cases, catalogue, AS_OF)
    return found.filter(pl.col("option_code") == code).row(0, named=True)


def fitting(found: pl.DataFrame) -> list[str]:
    """The codes of the options that fit, best first."""
    return found.filter(pl.col("eligible")).sort("rank")["option_code"].to_list()


def letter_codes(found: pl.DataFrame) -> list[str]:
    """The options a letter would list (the letters step reads the eligible rows)."""
    rows = found.filter(pl.col("eligible")).to_dicts()
    return [o["code"] for o in option_entries(rows, CATALOGUE, "en", "CA", 10, None)]


UNDERWATER = dict(senior_lien_balance=D("380000.00"))  # 107.5 %
EQUITY = dict(senior_lien_balance=D("250000.00"))  # 75 %
UNDERWATER_120 = dict(UNDERWATER, days_past_due=120)
EQUITY_20 = dict(EQUITY, days_past_due=20)

# (option, why it fits, why not: overrides of INPUT_BASE, and a word the rationale must hold)
TABLE = [
    (
        "repayment_plan",
        {},
        {"days_past_due": 0, "amount_past_due": D("0.00"), "installments_behind": 0},
        "days past due",
    ),
    ("repayment_plan", {}, {"care": ["bankruptcy"]}, "bankruptcy"),
    ("repayment_plan", {}, {"amount_past_due": D("2500.00")}, "cannot be repaid within 12 months"),
    ("forbearance", {}, {"occupancy": "investment"}, "occupancy investment"),
    ("forbearance", {}, {"care": ["deceased"]}, "deceased"),
    ("payment_deferral", {}, {"installments_behind": 1}, "1 payments behind"),
    ("payment_deferral", {}, {"installments_behind": 7}, "7 payments behind"),
    ("payment_deferral", {}, {"origination_date": date(2026, 1, 1)}, "loan 10 months old"),
    (
        "payment_deferral",
        {},
        {"first_payment_date": date(2000, 3, 1), "term_months": 300},
        "months to maturity",
    ),
    ("loan_modification", {}, {"days_past_due": 45}, "45 days past due"),
    (
        "loan_modification",
        {"days_past_due": 10, "reasons": ["payment_shock"]},
        {"days_past_due": 10, "reasons": ["paying_later"]},
        "imminent default",
    ),
    ("refinance", {**EQUITY_20}, {"days_past_due": 20}, "combined loan-to-value 88%"),
    ("refinance", {**EQUITY_20}, {**EQUITY_20, "property_value": None}, "no property value"),
    # a 30-day late is on the credit report: no refinance from 30 days
    (
        "refinance",
        {**EQUITY, "days_past_due": 29},
        {**EQUITY, "days_past_due": 30},
        "30 days past due (29 or fewer allowed)",
    ),
    ("sale", {}, {**UNDERWATER}, "108%"),
    ("sale", {}, {"days_past_due": 20}, "20 days past due"),
    ("short_sale", {**UNDERWATER}, {}, "88%"),
    ("deed_in_lieu", {"days_past_due": 95}, {}, "65 days past due"),
    ("second_lien_settlement", {**UNDERWATER_120}, {"days_past_due": 120}, "(100% or more needed)"),
    (
        "second_lien_settlement",
        {**UNDERWATER_120},
        {**UNDERWATER_120, "lien_position": 1},
        "lien position 1",
    ),
    # settling for less waits for the stage the catalogue sets (120 days)
    (
        "second_lien_settlement",
        {**UNDERWATER_120},
        {**UNDERWATER, "days_past_due": 119},
        "119 days past due (120+ needed)",
    ),
    # no forbearance as the first offer to a loan 180+ days past due
    (
        "forbearance",
        {"days_past_due": 179},
        {"days_past_due": 180},
        "180 days past due and no forbearance yet (a first one starts by 179 days past due)",
    ),
    ("bankruptcy_referral", {"care": ["bankruptcy"]}, {}, "only for borrowers with bankruptcy"),
]


class TestEachOption:
    @pytest.mark.parametrize(("code", "yes", "no", "because"), TABLE)
    def test_yes_and_no(self, code, yes, no, because):
        fits = option_row(code, **yes)
        assert fits["eligible"], fits["rationale"]
        assert fits["rank"] >= 1
        assert fits["rationale"].startswith("Fits: ")
        misses = option_row(code, **no)
        assert not misses["eligible"]
        assert misses["rank"] is None
        assert misses["rationale"].startswith("Does not fit: ")
        assert because in misses["rationale"]

    def test_counseling_is_always_offered(self):
        found = evaluate(
            option_inputs(
                {},
                {"care": ["bankruptcy", "deceased"]},
                {"days_past_due": 0, "tier": "early_warning"},
                {"occupancy": "investment", "property_state": "TX"},
            ),
            NO_CASES,
            CATALOGUE,
            AS_OF,
        )
        counseling = found.filter(pl.col("option_code") == "housing_counseling")
        assert counseling.height == 4 and counseling["eligible"].all()
        assert "(800) 569-4287" in CATALOGUE.by_code()["housing_counseling"].description.en

    def test_bankruptcy_is_only_a_referral(self):
        text = CATALOGUE.by_code()["bankruptcy_referral"].description
        assert "cannot give advice" in text.en and "attorney" in text.en
        assert "No podemos" in text.es

    def test_deferral_none_in_the_last_twelve_months(self):
        recent = loss_mit_cases(("L0", "payment_deferral", date(2026, 2, 1), date(2026, 2, 1)))
        row = option_row("payment_deferral", recent)
        assert not row["eligible"] and "began on 2026-02-01" in row["rationale"]
        old = loss_mit_cases(("L0", "payment_deferral", date(2025, 10, 1), date(2025, 10, 1)))
        assert option_row("payment_deferral", old)["eligible"]

    def test_forbearance_twelve_months_in_all(self):
        used_ten = loss_mit_cases(("L0", "forbearance", date(2025, 1, 1), date(2025, 10, 31)))
        row = option_row("forbearance", used_ten)
        assert row["eligible"] and row["plan_months"] == 2
        assert "10 of 12 months" in row["rationale"] and "2 left" in row["rationale"]
        used_all = loss_mit_cases(
            ("L0", "forbearance", date(2025, 1, 1), date(2025, 6, 30)),
            ("L0", "forbearance", date(2025, 7, 1), date(2025, 12, 31)),
        )
        assert not option_row("forbearance", used_all)["eligible"]
        first = option_row("forbearance")
        assert first["plan_months"] == 3

    def test_forbearance_past_180_days_only_goes_on(self):
        """A first forbearance starts before 180 days past due; one already used may go on."""
        first = option_row("forbearance", days_past_due=200, installments_behind=7)
        assert not first["eligible"]
        assert "a first one starts by 179 days past due" in first["rationale"]
        used = loss_mit_cases(("L0", "forbearance", date(2026, 3, 1), date(2026, 5, 31)))
        going_on = option_row("forbearance", used, days_past_due=200, installments_behind=7)
        assert going_on["eligible"] and going_on["plan_months"] == 3
        assert "200 days past due, continuing a forbearance already begun" in going_on["rationale"]

    def test_ranks_are_one_to_n_among_the_eligible(self):
        found = evaluate(
            option_inputs({}, {**UNDERWATER}, {"tier": "early_warning", "days_past_due": 5}),
            NO_CASES,
            CATALOGUE,
            AS_OF,
        )
        for _, group in found.group_by("loan_id"):
            ranks = sorted(group.filter(pl.col("eligible"))["rank"].to_list())
            assert ranks == list(range(1, len(ranks) + 1))
            assert (
                group.filter(~pl.col("eligible"))["rank"].null_count()
                == group.filter(~pl.col("eligible")).height
            )

    def test_best_fit_follows_the_tier(self):
        imminent = evaluate(option_inputs({}), NO_CASES, CATALOGUE, AS_OF)
        assert imminent.filter(pl.col("rank") == 1)["option_code"].item() == "payment_deferral"
        ahead = evaluate(
            option_inputs(
                {
                    "tier": "early_warning",
                    "reasons": ["payment_shock"],
                    "days_past_due": 0,
                    "installments_behind": 0,
                    "amount_past_due": D("0.00"),
                    **EQUITY,
                }
            ),
            NO_CASES,
            CATALOGUE,
            AS_OF,
        )
        assert ahead.filter(pl.col("rank") == 1)["option_code"].item() == "refinance"

    def test_california_notes_only_in_california(self):
        ca = option_row("short_sale", **UNDERWATER)
        assert any("580e" in note for note in ca["notes"]) and "not legal advice" in ca["notes"][0]
        assert option_row("short_sale", **UNDERWATER, property_state="NV")["notes"] == []


class TestRepaymentPlan:
    @pytest.mark.parametrize(
        ("arrears", "payment", "months", "monthly", "last"),
        [
            ("1200.00", "400.00", 6, "600.00", "600.00"),  # divides: 6 x $200
            ("1000.00", "300.00", 7, "442.85", "442.90"),  # $142.857..: 5 cents go to the last
            ("0.05", "400.00", 1, "400.05", "400.05"),
            ("2400.00", "400.00", 12, "600.00", "600.00"),  # exactly at 150 % for 12 months
        ],
    )
    def test_terms(self, arrears, payment, months, monthly, last):
        row = option_row(
            "repayment_plan", amount_past_due=D(arrears), installment_amount=D(payment)
        )
        assert row["eligible"], row["rationale"]
        assert (row["plan_months"], row["plan_payment"], row["plan_last_payment"]) == (
            months,
            D(monthly),
            D(last),
        )
        # every payment within 150 %, and the plan pays exactly the arrears
        assert row["plan_last_payment"] <= D(payment) * D("1.5")
        assert row["plan_payment"] <= D(payment) * D("1.5")
        paid = (row["plan_payment"] - D(payment)) * (months - 1) + (
            row["plan_last_payment"] - D(payment)
        )
        assert paid == D(arrears)
        assert row["amount"] == D(arrears)

    def test_cents_that_would_break_the_cap_take_one_more_month(self):
        # $2.99 over a $1.00 cap: 3 months would need 99, 99, 101 cents; 4 months: 74, 74, 74, 77.
        row = option_row("repayment_plan", amount_past_due=D("2.99"), installment_amount=D("2.00"))
        assert (row["plan_months"], row["plan_payment"], row["plan_last_payment"]) == (
            4,
            D("2.74"),
            D("2.77"),
        )

    def test_too_much_for_twelve_months(self):
        row = option_row(
            "repayment_plan", amount_past_due=D("2400.01"), installment_amount=D("400.00")
        )
        assert not row["eligible"] and row["plan_months"] is None
        assert "$2,400.01 past due cannot be repaid within 12 months" in row["rationale"]

    def plan(self, changes: pl.DataFrame, **overrides) -> dict:
        found = evaluate(
            option_inputs(overrides), NO_CASES, CATALOGUE, AS_OF, payment_changes=changes
        )
        return found.filter(pl.col("option_code") == "repayment_plan").row(0, named=True)

    def test_the_new_payment_after_a_scheduled_change(self):
        """LN00000156 on the sample's night: $509.66 behind on a $941.27 payment that rises
        to $1,220.48 in January. The plan's January installment carries the new payment."""
        changes = payment_changes(
            ("L0", date(2026, 11, 1), D("941.27")),  # already tonight's payment
            ("L0", date(2027, 1, 1), D("1220.48")),
        )
        row = self.plan(
            changes,
            days_past_due=19,
            installments_behind=1,
            amount_past_due=D("509.66"),
            installment_amount=D("941.27"),
        )
        assert row["eligible"], row["rationale"]
        assert row["plan_installments"] == [D("1196.10"), D("1475.31")]
        assert (row["plan_months"], row["plan_payment"], row["plan_last_payment"]) == (
            2,
            D("1196.10"),
            D("1475.31"),
        )
        assert (
            "then $1,475.31 a month from 2027-01-01 (the regular payment becomes $1,220.48)"
            in row["terms"]
        )

    def test_a_change_in_the_middle_of_the_plan(self):
        # $1,200 over 6 months on $400 (the $200 extra is the 150 % cap); $500 from March.
        changes = payment_changes(("L0", date(2027, 3, 1), D("500.00")))
        row = self.plan(changes)
        assert row["plan_installments"] == [D("600.00")] * 3 + [D("700.00")] * 3
        assert option_entries([row], CATALOGUE, "en", "CA", 1, None)[0]["terms"] == (
            "6 monthly payments: 3 of $600.00, then 2 of $700.00, the last $700.00"
        )
        assert option_entries([row], CATALOGUE, "es", "CA", 1, None)[0]["terms"] == (
            "6 pagos mensuales: 3 de $600.00, luego 2 de $700.00; el último, de $700.00"
        )

    def test_a_lower_payment_lowers_the_cap(self):
        # From January the payment is $300, so each extra is at most $150: 8 months, not 6.
        changes = payment_changes(("L0", date(2027, 1, 1), D("300.00")))
        row = self.plan(changes)
        assert row["plan_installments"] == [D("550.00")] + [D("450.00")] * 7
        assert all(
            paid <= regular * D("1.5")
            for paid, regular in zip(
                row["plan_installments"], [D("400.00")] + [D("300.00")] * 7, strict=True
            )
        )

    def test_most_months_spread(self):
        raw = copy.deepcopy(RAW)
        for entry in raw["option"]:
            if entry["code"] == "repayment_plan":
                entry["terms_settings"]["spread"] = "most_months"
        row = option_row("repayment_plan", catalogue=parse_catalogue(raw))
        assert (row["plan_months"], row["plan_payment"], row["plan_last_payment"]) == (
            12,
            D("500.00"),
            D("500.00"),
        )


TRIAL = loss_mit_cases(("L0", "trial_modification", date(2026, 8, 27), None))


class TestOpenCase:
    """A loan in an open loss-mitigation case is shown that case and offered nothing else."""

    def test_a_trial_modification_is_shown_and_nothing_competes(self):
        # 65 days, 3 payments behind and underwater: without the case a repayment plan,
        # a deferral, forbearance and a short sale would all fit.
        found = evaluate(option_inputs({**UNDERWATER}), TRIAL, CATALOGUE, AS_OF)
        assert fitting(evaluate(option_inputs({**UNDERWATER}), NO_CASES, CATALOGUE, AS_OF)) == [
            "payment_deferral",
            "loan_modification",
            "repayment_plan",
            "forbearance",
            "short_sale",
            "housing_counseling",
        ]
        assert fitting(found) == ["loan_modification", "housing_counseling"]
        shown = found.filter(pl.col("option_code") == "loan_modification").row(0, named=True)
        assert shown["rationale"] == (
            "Fits: under way in an open loss-mitigation case: a trial modification (open since "
            "2026-08-27); the case sets its terms."
        )
        assert shown["terms"] == "set by the open case"
        for code in ("repayment_plan", "payment_deferral", "forbearance", "short_sale"):
            held = found.filter(pl.col("option_code") == code).row(0, named=True)
            assert held["rank"] is None and held["terms"] is None
            assert (
                "held back while a loss-mitigation case is open: a trial modification (open "
                "since 2026-08-27)" in held["rationale"]
            ), code
        assert letter_codes(found) == ["loan_modification"]

    def test_the_case_shows_its_own_option_whatever_the_rules(self):
        # A repayment plan case on a loan whose arrears no plan of 12 months could take.
        case = loss_mit_cases(("L0", "repayment_plan", date(2026, 10, 1), None))
        found = evaluate(option_inputs({"amount_past_due": D("9000.00")}), case, CATALOGUE, AS_OF)
        assert fitting(found) == ["repayment_plan", "housing_counseling"]
        plan = found.filter(pl.col("option_code") == "repayment_plan").row(0, named=True)
        assert plan["plan_months"] is None and plan["plan_installments"] is None

    def test_an_application_holds_back_every_offer(self):
        case = loss_mit_cases(("L0", "application", date(2026, 11, 2), None))
        found = evaluate(option_inputs({"care": ["bankruptcy"]}, {}), case, CATALOGUE, AS_OF)
        # the referrals to outside help stay: they do not compete with the case
        assert fitting(found.filter(pl.col("loan_id") == "L0")) == [
            "housing_counseling",
            "bankruptcy_referral",
        ]
        assert (
            "a hardship application (open since 2026-11-02)"
            in found.filter(
                (pl.col("loan_id") == "L0") & (pl.col("option_code") == "payment_deferral")
            )["rationale"].item()
        )
        # the other loan has no case: its options are as before
        assert "repayment_plan" in fitting(found.filter(pl.col("loan_id") == "L1"))

    def test_a_closed_or_later_case_changes_nothing(self):
        closed = loss_mit_cases(("L0", "trial_modification", date(2026, 3, 1), date(2026, 6, 1)))
        later = loss_mit_cases(("L0", "trial_modification", date(2026, 11, 21), None))
        plain = fitting(evaluate(option_inputs({}), NO_CASES, CATALOGUE, AS_OF))
        for cases in (closed, later):
            assert fitting(evaluate(option_inputs({}), cases, CATALOGUE, AS_OF)) == plain


CURRENT = dict(days_past_due=0, installments_behind=0, amount_past_due=D("0.00"))


class TestCurrentBorrower:
    """A current loan whose only sign is being underwater is invited to call, not offered options."""

    def test_underwater_alone_gets_no_offer(self):
        found = evaluate(
            option_inputs(
                {**CURRENT, **UNDERWATER, "tier": "early_warning", "reasons": ["underwater"]},
                # a learned model may flag a current loan with no rule's sign at all
                {**CURRENT, **UNDERWATER, "tier": "imminent_default", "reasons": []},
            ),
            NO_CASES,
            CATALOGUE,
            AS_OF,
        )
        for (loan_id,), mine in found.group_by("loan_id"):
            assert fitting(mine) == ["housing_counseling"], loan_id
            assert letter_codes(mine) == []
        forbearance = found.filter(
            (pl.col("loan_id") == "L0") & (pl.col("option_code") == "forbearance")
        )["rationale"].item()
        assert "current, and being underwater is its only sign" in forbearance
        assert "invited to call" in forbearance

    def test_a_sign_of_hardship_still_opens_options(self):
        shock = {**CURRENT, **UNDERWATER, "tier": "early_warning"}
        found = evaluate(
            option_inputs({**shock, "reasons": ["underwater", "payment_shock"]}),
            NO_CASES,
            CATALOGUE,
            AS_OF,
        )
        assert fitting(found) == ["forbearance", "loan_modification", "housing_counseling"]
        # and a loan one day late is not current
        late = evaluate(
            option_inputs({**shock, "days_past_due": 1, "reasons": ["underwater"]}),
            NO_CASES,
            CATALOGUE,
            AS_OF,
        )
        assert "forbearance" in fitting(late)


class TestNeverOffered:
    def test_california_mortgage_relief_is_never_eligible(self):
        everyone = evaluate(
            option_inputs(
                {},
                {**UNDERWATER},
                {"days_past_due": 200, "installments_behind": 7},
                {"tier": "early_warning", "days_past_due": 0},
            ),
            NO_CASES,
            CATALOGUE,
            AS_OF,
        )
        calmrp = everyone.filter(pl.col("option_code") == "ca_mortgage_relief")
        assert calmrp.height == 4 and not calmrp["eligible"].any()
        assert calmrp["rationale"].str.contains("has closed").all()

    def test_even_a_catalogue_that_reopens_it_cannot_offer_it(self):
        raw = copy.deepcopy(RAW)
        for entry in raw["option"]:
            if entry["code"] == "ca_mortgage_relief":
                entry["rules"] = {"states": ["CA"]}
        row = option_row("ca_mortgage_relief", catalogue=parse_catalogue(raw))
        assert not row["eligible"] and row["rank"] is None

    def test_a_state_program_after_its_close_date(self):
        raw = copy.deepcopy(RAW)
        raw["option"].append(
            {
                "code": "state_help",
                "rank": {"default": 1},
                "name": {"en": "State help", "es": "Ayuda estatal"},
                "description": {"en": "A state program.", "es": "Un programa estatal."},
                "rules": {
                    "states": ["CA"],
                    "opens": date(2026, 1, 1),
                    "closes": date(2026, 11, 20),
                },
            }
        )
        row = option_row("state_help", catalogue=parse_catalogue(raw))
        assert not row["eligible"] and "closed on 2026-11-20" in row["rationale"]
        raw["option"][-1]["rules"]["closes"] = date(2026, 11, 21)
        assert option_row("state_help", catalogue=parse_catalogue(raw))["eligible"]

    @pytest.mark.parametrize(
        "entry",
        [
            {"code": "hamp"},
            {
                "code": "hamp_tier_2",
                "description": {"en": "Apply for HAMP today.", "es": "Solicite HAMP."},
            },
            {
                "code": "mha",
                "name": {"en": "Home Affordable Modification Program", "es": "Programa"},
            },
            {"code": "second_mod", "name": {"en": "2MP second lien", "es": "2MP"}},
        ],
    )
    def test_hamp_may_not_appear(self, entry):
        raw = copy.deepcopy(RAW)
        option = {
            "code": "x",
            "rank": {"default": 1},
            "name": {"en": "X", "es": "X"},
            "description": {"en": "X.", "es": "X."},
        }
        for key, value in entry.items():
            option[key] = value
        raw["option"].append(option)
        with pytest.raises(CatalogueError, match=r"HAMP|2MP"):
            parse_catalogue(raw)

    def test_the_bundled_catalogue_never_mentions_hamp_or_offers_calmrp(self):
        text = BUNDLED.read_text(encoding="utf-8")
        assert "HAMP" not in text.split("version =")[1]
        calmrp = CATALOGUE.by_code()["ca_mortgage_relief"]
        assert calmrp.rules.closes is not None and calmrp.rules.closes < AS_OF


class TestCatalogueFile:
    def write(self, tmp_path: Path, text: str) -> Path:
        path = tmp_path / "options.toml"
        path.write_text(text, encoding="utf-8")
        return path

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            (
                lambda t: t.replace("max_months = 12", 'max_months = "twelve"'),
                r"option 1 \(repayment_plan\): terms_settings.max_months",
            ),
            (
                lambda t: t.replace('code = "refinance"', 'code = "Refinance!"'),
                r"option 5 \(Refinance!\): code",
            ),
            (
                lambda t: t.replace(
                    'occupancy = ["primary"]\nexclude_care', 'occupancy = ["home"]\nexclude_care', 1
                ),
                r"option 2 \(forbearance\): rules.occupancy: .*unknown occupancy home",
            ),
            (
                lambda t: t.replace(
                    "min_days_past_due = 60", "min_days_past_due = 60\nmax_dpd = 5"
                ),
                r"option 4 \(loan_modification\): rules.max_dpd: Extra inputs",
            ),
            (
                lambda t: t.replace('code = "sale"', 'code = "short_sale"'),
                "short_sale appears twice",
            ),
            (
                lambda t: t.replace("rank = { default = 90 }", "rank = { early = 90 }"),
                r"option 10 \(housing_counseling\): rank: .*unknown tier early",
            ),
            (
                lambda t: t.replace('min_cltv = "1.00"', 'min_cltv = "1.00"\nmax_cltv = "0.50"'),
                r"second_lien_settlement.*min_cltv is after max_cltv",
            ),
            (
                lambda t: t.replace(
                    'case_types = ["forbearance"]', 'case_types = ["repayment_plan"]'
                ),
                "case type repayment_plan is under way for both repayment_plan and forbearance",
            ),
            (
                lambda t: t.replace(
                    'case_types = ["trial_modification"]', 'case_types = ["trial"]'
                ),
                r"option 4 \(loan_modification\): case_types: .*unknown case type trial",
            ),
            (
                lambda t: t.replace(
                    'max_used_months = 12\nused_case_types = ["forbearance"]\n', ""
                ),
                r"option 2 \(forbearance\): rules: .*first_max_days_past_due needs used_case_types",
            ),
        ],
    )
    def test_bad_catalogue_names_entry_and_key(self, tmp_path, change, message):
        path = self.write(tmp_path, change(BUNDLED.read_text(encoding="utf-8")))
        with pytest.raises(LienwatchError, match=message) as caught:
            load_catalogue(path)
        assert str(path) in str(caught.value)

    def test_not_toml(self, tmp_path):
        with pytest.raises(LienwatchError, match="not valid TOML"):
            load_catalogue(self.write(tmp_path, "option = [[["))

    def test_missing(self, tmp_path):
        with pytest.raises(LienwatchError, match="catalogue not found"):
            load_catalogue(tmp_path / "nope.toml")

    def test_bundled_loads(self):
        assert load_catalogue(None).version == RAW["version"]


class TestServicerEditsTheCatalogue:
    """A new option and a changed threshold in the data file alone act on the next night."""

    def test_next_night_uses_the_edited_file(self, tmp_path):
        from lienwatch.settings import Settings
        from tests.landing import landing, ledger

        # L1 pays March and April 2024 and misses May: 19 days past due on 20 May.
        folder = landing(
            tmp_path / "in",
            {
                "p.csv": ledger(
                    "T1,L1,2024-03-01,250.00,payment,,",
                    "T2,L1,2024-04-01,250.00,payment,,",
                    "T3,L2,2024-06-01,400.00,payment,,",
                )
            },
        )
        mine = tmp_path / "our_options.toml"
        mine.write_text(BUNDLED.read_text(encoding="utf-8"), encoding="utf-8")
        settings = Settings.model_validate({"options": {"catalogue": str(mine)}})

        def night(as_of: date) -> pl.DataFrame:
            n = Night(
                data=folder,
                db=tmp_path / "wh.duckdb",
                out=tmp_path / "out",
                as_of=as_of,
                run_id=f"{as_of}",
            )
            ingest_step.run(n)
            delinquency_step.run(n, settings)
            flags_step.run(n, settings)
            options_step.run(n, settings)
            import duckdb

            con = duckdb.connect(str(n.db), read_only=True)
            try:
                return con.sql(
                    "SELECT * FROM hardship_options WHERE as_of_date = $d AND loan_id = 'L1'",
                    params={"d": as_of},
                ).pl()
            finally:
                con.close()

        first = night(date(2024, 5, 20))
        assert "hardship_call_back" not in first["option_code"].to_list()
        assert first.filter(pl.col("option_code") == "refinance")[
            "eligible"
        ].item()  # combined LTV 75.6 %

        text = mine.read_text(encoding="utf-8").replace('max_cltv = "0.80"', 'max_cltv = "0.70"')
        text = (
            text.replace('version = "2026-12-15"', 'version = "2026-12-16"')
            + """
[[option]]
code = "hardship_call_back"
rank = { default = 1 }
name.en = "Call-back from a hardship specialist"
name.es = "Llamada de un especialista"
description.en = "A specialist calls you back within one business day."
description.es = "Un especialista le devuelve la llamada en un día hábil."
[option.rules]
min_days_past_due = 15
"""
        )
        assert 'max_cltv = "0.70"' in text
        mine.write_text(text, encoding="utf-8")

        second = night(date(2024, 5, 21))
        added = second.filter(pl.col("option_code") == "hardship_call_back").row(0, named=True)
        assert (
            added["eligible"] and added["rank"] == 1 and added["catalogue_version"] == "2026-12-16"
        )
        refinance = second.filter(pl.col("option_code") == "refinance").row(0, named=True)
        assert not refinance["eligible"]
        assert "combined loan-to-value 76% (below 70% needed)" in refinance["rationale"]
