"""Letters: the decision rules, every template in both languages, the checklist, hostile names, PDFs."""

from __future__ import annotations

import copy
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
from lienwatch.night import Night
from lienwatch.settings import Settings
from lienwatch.steps import delinquency as delinquency_step
from lienwatch.steps import flags as flags_step
from lienwatch.steps import ingest as ingest_step
from lienwatch.steps import letters as letters_step
from lienwatch.steps import options as options_step
from transforms.contract import LETTER_TEMPLATES
from transforms.letters import (
    HISTORY_COLUMNS,
    Rules,
    check,
    decide,
    letter_id,
    letter_ids,
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
    address_ok=True,
    has_option=True,
)


def candidates(*loans: dict) -> pl.DataFrame:
    rows = [
        dict(
            BASE, loan_id=o.pop("loan_id", f"L{i}"), borrower_id=o.pop("borrower_id", f"B{i}"), **o
        )
        for i, o in enumerate(copy.deepcopy(list(loans)))
    ]
    return pl.DataFrame(rows, schema_overrides={"care": pl.List(pl.String)})


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
            ({"address_ok": False}, "undeliverable address"),
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
        sent = history(("OTHER", "B0", "early_warning", 10))
        row = one(decided({}, past=sent))
        assert (
            row["status"] == "suppressed"
            and "at most one letter in 14 days" in row["suppression_reason"]
        )
        sent = history(("OTHER", "B0", "early_warning", 14))
        assert one(decided({}, past=sent))["status"] == "generated"

    def test_one_letter_per_borrower_per_night(self):
        out = decided(
            {"loan_id": "A", "borrower_id": "B", "tier": "early_warning", "days_past_due": 3},
            {"loan_id": "C", "borrower_id": "B", "days_past_due": 40},
            {"loan_id": "D", "borrower_id": "B", "product": "heloc", "days_past_due": 31},
        )
        made = out.filter(pl.col("status") == "generated")
        assert (
            made["loan_id"].to_list() == ["C"] and made["template"].item() == "early_intervention"
        )
        others = out.filter(pl.col("status") == "suppressed")
        assert others.height == 2
        assert others["suppression_reason"].str.contains("the letter for loan C goes instead").all()

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


# --------------------------------------------------------------------------- rendering

SETTINGS = Settings()
OPTIONS = [
    {
        "code": "repayment_plan",
        "name": "Repayment plan",
        "description": "Catch up over several months.",
        "terms": "6 monthly payments of $600.00, the last $600.00",
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
        "installment_amount": D("400.00"),
        "next_change_amount": D("520.00"),
        "next_change_date": date(2027, 1, 1),
    }
    return {**base, **overrides}


def payload(template: str, language: str, **overrides) -> dict:
    return render.letter_payload(
        row(template, language, **overrides),
        OPTIONS,
        render.servicer_block(SETTINGS, language),
        AS_OF,
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

    def test_a_letter_failing_its_checklist_is_not_written(self, tmp_path):
        letter = payload("early_intervention", "en")
        letter["checks"]["team_phone"] = "(999) 000-0000"
        result = render.render(letter, tmp_path)
        assert result["problems"] == ["missing team_phone"] and result["pdf_path"] is None
        assert list(tmp_path.iterdir()) == []


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
            checks = payload(template, language)["checks"]
            problems = check(text, template, language, render.checklist(), checks)
            assert problems == [], (template, language, problems)
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


def test_dry_run_records_decisions_without_letters(tmp_path):
    from tests.landing import landing, ledger

    folder = landing(tmp_path / "in", {"p.csv": ledger("T1,L1,2024-03-01,250.00,payment,,")})
    settings = Settings.model_validate({"letters": {"render": False}})
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
    made = letters_step.run(n, settings)
    assert made["generated"] == 0 and made["suppressed"] == 2
    assert made["suppressed_by_reason"] == {"dry run": made["suppressed"]}
    assert not list((tmp_path / "out").rglob("*.pdf"))
