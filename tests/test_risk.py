"""The learned early warning: its inputs checked by hand, its measures, its reasons, and a
model trained on a generated book."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

from lienwatch.generate import generate
from lienwatch.night import Night
from lienwatch.risk_model import TooLittleHistory
from lienwatch.settings import Settings
from lienwatch.steps import delinquency as delinquency_step
from lienwatch.steps import flags as flags_step
from lienwatch.steps import ingest as ingest_step
from lienwatch.train import split_months, train
from tests.helpers import POLICY, features
from transforms import risk

AS_OF = date(2026, 11, 20)


def bucket_path(history: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """The night's path query (transforms.risk.bucket_path_sql) over a frame."""
    with duckdb.connect() as con:
        con.register("_history", history.select("as_of_date", "loan_id", "days_past_due"))
        found = con.sql(
            risk.bucket_path_sql("_history"), params={"ends": risk.path_month_ends(as_of)}
        ).pl()
    return found.cast({"months_late_12m": pl.Int32, "months_30_12m": pl.Int32})


def month_ends(*days: str) -> list[date]:
    return [date.fromisoformat(d) for d in days]


class TestBucketPath:
    def test_path_over_the_month_ends_before_the_night(self):
        """Days past due at the latest three month ends before the night, the worst over
        twelve, and how many found the loan behind; a month end on or after the night is
        not the past."""
        ends = month_ends(
            "2025-10-31", "2025-11-30", "2026-06-30", "2026-07-31", "2026-08-31",
            "2026-09-30", "2026-10-31", "2026-11-30",
        )  # fmt: skip
        dpd = [95, 0, 40, 0, 12, 0, 25, 70]
        history = pl.DataFrame(
            {"as_of_date": ends, "loan_id": ["A"] * len(ends), "days_past_due": dpd}
        )
        row = bucket_path(history, AS_OF).row(0, named=True)
        # 2025-10-31 is more than twelve month ends back; 2026-11-30 is after the night
        assert row == {
            "loan_id": "A",
            "dpd_month_ago": 25,
            "dpd_2_months_ago": 0,
            "dpd_3_months_ago": 12,
            "max_dpd_12m": 40,
            "months_late_12m": 3,
            "months_30_12m": 1,
        }


class TestModelInputs:
    def test_each_input_by_hand(self):
        """A HELOC past its draw period, 20 days late with $150 in suspense, a returned
        payment, its first mortgage 30 days behind and a payment rising by a quarter."""
        frame = features(
            {
                "days_past_due": 20,
                "bucket": "1-29",
                "amount_past_due": D("400.00"),
                "suspense_amount": D("150.00"),
                "returns_in_window": 1,
                "senior_days_past_due": 30,
                "next_change_amount": D("500.00"),
                "next_change_date": date(2026, 12, 1),
                "days_late": [3, 9, 20],
                "property_value": D("350000.00"),
            }
        )
        terms = pl.DataFrame(
            {
                "loan_id": ["L0"],
                "first_payment_date": [date(2016, 11, 1)],
                "draw_period_end": [date(2026, 11, 1)],
            }
        )
        path = pl.DataFrame(
            {
                "loan_id": ["L0"],
                "dpd_month_ago": [5],
                "dpd_2_months_ago": [0],
                "dpd_3_months_ago": [None],
                "max_dpd_12m": [5],
                "months_late_12m": [1],
                "months_30_12m": [0],
            },
            schema_overrides={"dpd_3_months_ago": pl.Int32},
        )
        row = risk.model_inputs(frame, path, terms, AS_OF).row(0, named=True)
        assert row == {
            "loan_id": "L0",
            "days_past_due": 20.0,
            "months_behind": 1.0,  # $400 of a $400 installment
            "suspense_share": 0.375,  # $150 of $400
            "last_payment_short": 0.0,
            "returns_in_window": 1.0,
            "senior_days_past_due": 30.0,
            "payment_rise": pytest.approx(0.25),  # $400 to $500
            "days_late_last": 20.0,
            "days_late_before": 9.0,
            "days_late_oldest": 3.0,
            "lateness_trend": 17.0,
            "cltv": pytest.approx((300_000 + 50_000) / 350_000),
            "dpd_month_ago": 5.0,
            "dpd_2_months_ago": 0.0,
            "dpd_3_months_ago": None,
            "max_dpd_12m": 5.0,
            "months_late_12m": 1.0,
            "months_30_12m": 0.0,
            "heloc": 1.0,
            "draw_ended": 1.0,
            "months_to_draw_end": 0.0,
            "loan_age_months": 120.0,
            "not_primary": 0.0,
            "balance": 50_000.0,
        }

    def test_a_loan_without_history_or_terms_has_nulls_not_errors(self):
        row = risk.model_inputs(
            features({}),
            bucket_path(
                pl.DataFrame(
                    schema={"as_of_date": pl.Date, "loan_id": pl.String, "days_past_due": pl.Int32}
                ),
                AS_OF,
            ),
            pl.DataFrame(
                schema={
                    "loan_id": pl.String,
                    "first_payment_date": pl.Date,
                    "draw_period_end": pl.Date,
                }
            ),
            AS_OF,
        ).row(0, named=True)
        assert row["dpd_month_ago"] is None and row["months_late_12m"] == 0.0
        assert row["loan_age_months"] is None and row["payment_rise"] == 0.0


class TestMeasures:
    def test_auc(self):
        assert risk.auc(np.array([0.1, 0.2, 0.3, 0.4]), np.array([0, 0, 1, 1])) == 1.0
        assert risk.auc(np.array([0.4, 0.3, 0.2, 0.1]), np.array([0, 0, 1, 1])) == 0.0
        assert risk.auc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5
        assert risk.auc(np.array([0.5]), np.array([1])) is None

    def test_platt_recovers_a_known_calibration(self):
        """Scores whose true probability is logistic in their log-odds come out calibrated."""
        rng = np.random.default_rng(3)
        raw = rng.uniform(0.001, 0.5, 200_000)
        truth = 1 / (1 + np.exp(-(0.8 * np.log(raw / (1 - raw)) - 0.5)))
        bad = rng.random(raw.size) < truth
        a, b = risk.calibrate(raw, bad)
        assert a == pytest.approx(0.8, abs=0.03) and b == pytest.approx(-0.5, abs=0.08)
        table = risk.calibration_table(risk.calibrated(raw, a, b), bad)
        assert sum(t["loans"] for t in table) == raw.size and len(table) == 10
        assert all(abs(t["predicted"] - t["observed"]) < 0.01 for t in table)

    @pytest.mark.parametrize("share", [0.0, 0.04, 0.05, 0.5])
    def test_the_threshold_flags_at_most_the_share(self, share):
        values = np.random.default_rng(5).random(1_003)
        threshold = risk.propose_threshold(values, share)
        assert (values >= threshold).sum() == int(share * values.size)

    def test_psi(self):
        rng = np.random.default_rng(9)
        base = rng.beta(1, 30, 50_000)
        bins = risk.psi_bins(base)
        assert risk.psi(rng.beta(1, 30, 50_000), bins) < 0.01
        assert risk.psi(rng.beta(1, 8, 50_000), bins) > 0.25

    def test_psi_is_steady_where_trees_give_many_loans_one_score(self):
        """Scores in point masses, as trees give them, two of them a hair apart: loans
        moving between masses of the same risk are no drift (bins at the sample's tenths
        fell between such masses and read 0.43 here; a night at 1M loans read 0.36)."""
        rng = np.random.default_rng(4)
        masses = np.array([0.0016, 0.0030, 0.004805, 0.004818, 0.0156, 0.0158, 0.09])
        base = rng.choice(masses, 100_000, p=[0.2, 0.1, 0.16, 0.06, 0.22, 0.2, 0.06])
        bins = risk.psi_bins(base)
        again = rng.choice(masses, 100_000, p=[0.2, 0.1, 0.04, 0.18, 0.1, 0.32, 0.06])
        assert risk.psi(again, bins) < 0.01
        weighted = risk.psi_bins(base, np.where(base > 0.05, 1.0, 2.0))
        assert sum(weighted["shares"]) == pytest.approx(1.0)


class TestReasons:
    def test_ordered_by_share_and_only_adverse_figures(self):
        """Reasons are the signals whose features add to the score, largest first, where
        the loan's figures are adverse: a clean senior lien adds nothing."""
        frame = features(
            {
                "days_past_due": 12,
                "amount_past_due": D("400.00"),
                "returns_in_window": 2,
                "last_return_date": date(2026, 11, 2),
                "senior_days_past_due": 0,
                "senior_reported_date": date(2026, 10, 31),
                "days_late": [0, 5, 12],
            }
        )
        inputs = risk.model_inputs(frame, _no_path(), _no_terms(), AS_OF)
        share = np.zeros((1, len(risk.FEATURES) + 1))
        names = list(risk.FEATURE_NAMES)
        share[0, names.index("returns_in_window")] = 0.9
        share[0, names.index("days_late_last")] = 0.4
        share[0, names.index("days_late_before")] = 0.3
        share[0, names.index("senior_days_past_due")] = 2.0  # not adverse: reported current
        share[0, names.index("days_past_due")] = -0.2
        got = risk.reasons(inputs, share, frame, POLICY).row(0, named=True)
        assert got["reasons"] == ["returned_payment", "paying_later"]
        assert got["weights"] == [0.9, 0.7]
        assert (
            got["reason_details"][0]
            == "2 payment(s) returned unpaid recently, the latest on 2026-11-02."
        )
        assert "12" in got["reason_details"][1]

    def test_a_score_with_no_adverse_share_still_names_a_signal(self):
        frame = features({})
        inputs = risk.model_inputs(frame, _no_path(), _no_terms(), AS_OF)
        share = np.zeros((1, len(risk.FEATURES) + 1))
        share[0, list(risk.FEATURE_NAMES).index("cltv")] = -0.1
        got = risk.reasons(inputs, share, frame, POLICY).row(0, named=True)
        assert len(got["reasons"]) == 1 and got["reason_details"][0]


class TestContributions:
    def test_shares_sum_to_the_score_and_credit_the_feature_that_moved_it(self):
        """The path method: each row's shares over the trees sum to its raw score exactly,
        and a score driven by one feature is credited to that feature."""
        import lightgbm

        rng = np.random.default_rng(3)
        x = rng.normal(size=(4_000, len(risk.FEATURES))).astype(np.float32)
        x[rng.random(x.shape) < 0.05] = np.nan  # missing figures take their default branch
        driver = list(risk.FEATURE_NAMES).index("returns_in_window")
        y = (np.nan_to_num(x[:, driver]) + rng.normal(scale=0.5, size=len(x))) > 1.5
        booster = lightgbm.train(
            {"objective": "binary", "num_leaves": 7, "verbose": -1, "seed": 1},
            lightgbm.Dataset(x, label=y),
            num_boost_round=30,
        )
        tables = [
            risk.path_contributions(tree, len(risk.FEATURES))
            for tree in booster.dump_model()["tree_info"]
        ]
        shares = risk.summed_contributions(tables, booster.predict(x, pred_leaf=True))
        assert np.allclose(shares.sum(axis=1), booster.predict(x, raw_score=True), atol=1e-9)
        high = np.nan_to_num(x[:, driver]) > 2
        assert (shares[high].argmax(axis=1) == driver).mean() > 0.95


def _no_path() -> pl.DataFrame:
    return bucket_path(
        pl.DataFrame(
            schema={"as_of_date": pl.Date, "loan_id": pl.String, "days_past_due": pl.Int32}
        ),
        AS_OF,
    )


def _no_terms() -> pl.DataFrame:
    return pl.DataFrame(
        schema={"loan_id": pl.String, "first_payment_date": pl.Date, "draw_period_end": pl.Date}
    )


class TestSplit:
    def test_too_little_history_is_refused_with_the_reason(self):
        ends = [date(2026, m, 28) for m in range(1, 12)]
        with pytest.raises(
            TooLittleHistory, match="11 month ends of history; training needs at least 12"
        ):
            split_months(ends, 6, 3, 12)

    def test_train_calibrate_validate_out_of_time(self):
        from transforms.backtest import add_months

        ends = [add_months(date(2024, 11, 30), k) for k in range(25)]
        split = split_months(ends, 6, 3, 12)
        assert split.validate == ends[16:19] and split.calibrate == ends[13:16]
        assert split.train == ends[:13]


# --------------------------------------------------------------------------- a generated book


def _first_night(root: Path, loans: int, months: int) -> tuple[Night, Settings]:
    data = root / "in"
    generate(data, loans=loans, months=months, seed=21, end_date=AS_OF)
    night = Night(data=data, db=root / "wh.duckdb", out=root / "out", as_of=AS_OF, run_id="t")
    settings = Settings()
    ingest_step.run(night)
    delinquency_step.run(night, settings)
    return night, settings


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Night, Settings, dict]:
    night, settings = _first_night(tmp_path_factory.mktemp("book"), loans=2_500, months=24)
    return night, settings, train(settings, night.db)


@pytest.mark.slow
class TestTrainedBook:
    def test_recorded_and_in_use(self, trained):
        night, _, row = trained
        with duckdb.connect(str(night.db), read_only=True) as con:
            found = con.execute("SELECT version, in_use, features FROM risk_models").fetchall()
        assert found == [(row["version"], True, list(risk.FEATURE_NAMES))]
        assert Path(row["model_file"]).read_text() == row["model_text"]

    def test_ranks_the_loans_that_go_on_to_default_first(self, trained):
        """The generator's borrowers who stop paying drift later first: out of time, the
        model ranks the loans that reached 90 days above the rest, well ahead of the rules'
        score."""
        _, _, row = trained
        import json

        metrics = json.loads(row["metrics"])
        assert metrics["validation_bad"] >= 20
        assert metrics["auc"] > 0.85
        assert metrics["auc"] > metrics["auc_rules_score"]
        assert metrics["current_flagged_share"] <= 0.05

    def test_a_rerun_scores_the_same_bit_for_bit(self, trained):
        night, settings, row = trained
        runs = []
        for _ in range(2):
            counts = flags_step.run(night, settings)
            assert counts["risk_model"] == row["version"]
            with duckdb.connect(str(night.db), read_only=True) as con:
                runs.append(
                    con.sql(
                        "SELECT loan_id, risk FROM loan_risk WHERE as_of_date = $d ORDER BY loan_id",
                        params={"d": AS_OF},
                    ).fetchall()
                )
        assert runs[0] == runs[1] and len(runs[0]) > 1_000

    def test_every_flag_names_a_signal_with_its_figures(self, trained):
        night, settings, row = trained
        flags_step.run(night, settings)
        with duckdb.connect(str(night.db), read_only=True) as con:
            flagged = con.sql(
                "SELECT * FROM risk_flags WHERE as_of_date = $d AND days_past_due < 90",
                params={"d": AS_OF},
            ).pl()
        assert flagged.height and (flagged["risk_model"] == row["version"]).all()
        assert flagged["reasons"].list.len().min() >= 1
        assert (flagged["reasons"].list.len() == flagged["reason_details"].list.len()).all()
        assert (
            flagged["reason_details"].list.eval(pl.element().str.contains(r"\d")).list.all().all()
        )

    def test_the_next_night_keeps_unchanged_scores_exactly(self, trained, monkeypatch):
        """A night scores again only the loans whose inputs changed since the night before;
        every loan's risk is what scoring it afresh gives, bit for bit, and the paths kept
        from the night before are the ones the month-end history gives."""
        import dataclasses

        from lienwatch import risk_model

        night, settings, _ = trained
        flags_step.run(night, settings)
        after = dataclasses.replace(night, as_of=date(2026, 11, 21))
        delinquency_step.run(after, settings)
        through_trees: list[int] = []
        risk_of = risk_model.Model.risk

        def counted(self, inputs):
            through_trees.append(inputs.height)
            return risk_of(self, inputs)

        monkeypatch.setattr(risk_model.Model, "risk", counted)

        def scores() -> list[tuple]:
            with duckdb.connect(str(night.db), read_only=True) as con:
                return con.sql(
                    """SELECT loan_id, risk, inputs_hash FROM loan_risk WHERE as_of_date = $d
                    ORDER BY loan_id""",
                    params={"d": after.as_of},
                ).fetchall()

        flags_step.run(after, settings)
        kept = scores()
        assert 0 < through_trees[-1] < len(kept) / 2  # most loans did not change in a day
        with duckdb.connect(str(night.db)) as con:  # nothing kept: every loan afresh
            con.execute(f"DROP TABLE {flags_step.PATHS}")
            con.execute("DELETE FROM loan_risk WHERE as_of_date < $d", {"d": after.as_of})
        flags_step.run(after, settings)
        assert through_trees[-1] == len(kept)
        assert scores() == kept


def test_too_short_a_history_keeps_the_rules(tmp_path):
    """A small book (300 loans): too few of them went bad to learn from, so train refuses,
    saying why, and the night keeps the rules."""
    night, settings = _first_night(tmp_path, loans=300, months=6)
    with pytest.raises(
        TooLittleHistory,
        match=r"loans went bad .* training needs at least 50 \(risk.min_bad_loans\)",
    ):
        train(settings, night.db)
    assert flags_step.run(night, settings)["risk_model"] == "rules"
