"""Hardship options: which ways out fit each flagged borrower, ranked, and why.

The options and their rules are the servicer's policy, kept as data (a TOML
catalogue, see ``lienwatch/catalogue/hardship_options.toml``). Two pure steps:

- :func:`parse_catalogue`: a catalogue mapping checked entry by entry; a mistake
  raises :class:`CatalogueError` naming the entry and the key.
- :func:`evaluate`: one row per flagged loan per option: eligible or not, the rank
  among the eligible (1 = best fit), the rationale in plain words with the loan's own
  figures, and the computed terms as columns (plan months and payments, amounts).

Two programs are never offered whatever the catalogue says: HAMP (and its second-lien
program 2MP) ended in 2016-2017 and may not appear at all; the California Mortgage
Relief Program has closed, so it is always shown as not available.

Two rules hold whatever the catalogue says, for every option but the referrals to
outside help (``referral = true``: housing counseling, a bankruptcy attorney):

- a loan with an open loss-mitigation case is shown that case (the option whose
  ``case_types`` it is fits, "under way") and is offered nothing that competes with it;
- a current loan whose only sign is being underwater is offered nothing: the home's
  value is not a hardship, and the letter invites the borrower to call.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from transforms.cases import open_cases
from transforms.contract import (
    CARE_FLAGS,
    LANGUAGES,
    LOSS_MIT_CASE_TYPES,
    OCCUPANCIES,
    PRODUCTS,
    SIGNALS,
    TIERS,
)
from transforms.delinquency import due_date
from transforms.formats import cents, from_cents, money_text

# Programs that must never be put in front of a borrower.
RETIRED = {
    "hamp": "HAMP ended in 2016-2017",
    "2mp": "HAMP's Second Lien Modification Program (2MP) ended in 2016-2017",
}
RETIRED_WORDS = re.compile(
    r"\bHAMP\b|Home Affordable Modification|\b2MP\b|Second Lien Modification Program", re.IGNORECASE
)
CLOSED_FOR_GOOD = {
    "ca_mortgage_relief": "the California Mortgage Relief Program has closed and takes no applications",
}
# Signals about the collateral, not the borrower's ability to pay: on their own they are
# no reason to put a workout in front of a borrower who is paying.
NOT_HARDSHIP = ("underwater",)
CASE_WORDS = {
    "forbearance": "a forbearance",
    "repayment_plan": "a repayment plan",
    "trial_modification": "a trial modification",
    "application": "a hardship application",
    "payment_deferral": "a payment deferral",
}

INPUT_COLUMNS = {
    "loan_id": "risk_flags",
    "borrower_id": "risk_flags",
    "tier": "risk_flags",
    "reasons": "risk_flags: early-warning signal codes",
    "care": "risk_flags: care flags",
    "days_past_due": "loan_status",
    "installments_behind": "loan_status: installments due less installments paid",
    "amount_past_due": "loan_status",
    "installment_amount": "loan_status: the current regular payment",
    "next_due_date": "loan_status (null after the last installment)",
    "lien_position": "loans",
    "product": "loans",
    "occupancy": "loans",
    "property_state": "loans",
    "origination_date": "loans",
    "first_payment_date": "loans",
    "term_months": "loans",
    "current_balance": "loans",
    "property_value": "loans (may be null)",
    "senior_lien_balance": "loans (may be null)",
}
CASE_COLUMNS = ("loan_id", "case_type", "status", "opened_date", "closed_date")
CHANGE_COLUMNS = ("loan_id", "effective_due_date", "scheduled_payment")


class CatalogueError(ValueError):
    """A catalogue that cannot be used; the message names the file, the entry and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Words(_Strict):
    en: str = Field(min_length=1)
    es: str = Field(min_length=1)


class NoteWords(_Strict):
    en: tuple[str, ...] = ()
    es: tuple[str, ...] = ()


Months = Annotated[int, Field(ge=0, le=600)]
Ratio = Annotated[Decimal, Field(gt=0, le=10)]


class Rules(_Strict):
    min_days_past_due: Annotated[int, Field(ge=0)] | None = None
    max_days_past_due: Annotated[int, Field(ge=0)] | None = None
    or_signals: tuple[str, ...] = ()
    min_installments_behind: Months | None = None
    max_installments_behind: Months | None = None
    products: tuple[str, ...] | None = None
    occupancy: tuple[str, ...] | None = None
    states: tuple[Annotated[str, Field(pattern=r"^[A-Z]{2}$")], ...] | None = None
    lien_positions: tuple[Literal[1, 2], ...] | None = None
    min_loan_age_months: Months | None = None
    min_months_to_maturity: Months | None = None
    min_cltv: Ratio | None = None
    max_cltv: Ratio | None = None
    exclude_care: tuple[str, ...] = ()
    require_care: tuple[str, ...] = ()
    none_within_months: Months | None = None
    none_within_case_types: tuple[str, ...] = ()
    max_used_months: Months | None = None
    used_case_types: tuple[str, ...] = ()
    first_max_days_past_due: Annotated[int, Field(ge=0)] | None = None
    opens: date | None = None
    closes: date | None = None

    @field_validator("or_signals")
    @classmethod
    def _signals(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _known(value, SIGNALS, "signal")

    @field_validator("products")
    @classmethod
    def _products(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return _known(value, PRODUCTS, "product")

    @field_validator("occupancy")
    @classmethod
    def _occupancy(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return _known(value, OCCUPANCIES, "occupancy")

    @field_validator("exclude_care", "require_care")
    @classmethod
    def _care(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _known(value, CARE_FLAGS, "care flag")

    @field_validator("none_within_case_types", "used_case_types")
    @classmethod
    def _case_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _known(value, LOSS_MIT_CASE_TYPES, "case type")

    @model_validator(mode="after")
    def _pairs(self) -> Rules:
        if self.none_within_months is not None and not self.none_within_case_types:
            raise ValueError("none_within_months needs none_within_case_types")
        if self.max_used_months is not None and not self.used_case_types:
            raise ValueError("max_used_months needs used_case_types")
        if self.first_max_days_past_due is not None and not self.used_case_types:
            raise ValueError("first_max_days_past_due needs used_case_types")
        if self.or_signals and self.min_days_past_due is None:
            raise ValueError("or_signals needs min_days_past_due")
        for low, high in (
            ("min_days_past_due", "max_days_past_due"),
            ("min_installments_behind", "max_installments_behind"),
            ("min_cltv", "max_cltv"),
            ("opens", "closes"),
        ):
            a, b = getattr(self, low), getattr(self, high)
            if a is not None and b is not None and a > b:
                raise ValueError(f"{low} is after {high}")
        return self


_Codes = TypeVar("_Codes", bound=tuple[str, ...] | None)


def _known(value: _Codes, allowed: tuple[str, ...], what: str) -> _Codes:
    if value is None:
        return value
    unknown = [v for v in value if v not in allowed]
    if unknown:
        raise ValueError(
            f"unknown {what} {', '.join(map(str, unknown))}; known: {', '.join(allowed)}"
        )
    return value


class TermsSettings(_Strict):
    max_months: Annotated[int, Field(ge=1, le=120)] = 12
    max_payment_ratio: Annotated[Decimal, Field(gt=1, le=5)] = Decimal("1.50")
    spread: Literal["fewest_months", "most_months"] = "fewest_months"
    step_months: Annotated[int, Field(ge=1, le=24)] = 3
    total_months: Annotated[int, Field(ge=1, le=60)] = 12


class Option(_Strict):
    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    terms: Literal[
        "none", "forbearance", "repayment_plan", "payment_deferral", "lien_settlement"
    ] = "none"
    offer: bool = True
    rank: dict[str, Annotated[int, Field(ge=0, le=1000)]]
    name: Words
    description: Words
    notes: NoteWords = NoteWords()
    notes_states: tuple[Annotated[str, Field(pattern=r"^[A-Z]{2}$")], ...] | None = None
    rules: Rules = Rules()
    terms_settings: TermsSettings = TermsSettings()
    case_types: tuple[str, ...] = ()
    referral: bool = False

    @field_validator("case_types")
    @classmethod
    def _case_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _known(value, LOSS_MIT_CASE_TYPES, "case type")

    @field_validator("rank")
    @classmethod
    def _tiers(cls, value: dict[str, int]) -> dict[str, int]:
        _known(tuple(value), (*TIERS, "default"), "tier")
        if "default" not in value and set(value) != set(TIERS):
            raise ValueError("give a rank for every tier, or a `default`")
        return value

    @model_validator(mode="after")
    def _not_retired(self) -> Option:
        if self.code in RETIRED:
            raise ValueError(f"{RETIRED[self.code]} and must not be offered")
        for text in (
            self.name.en,
            self.name.es,
            self.description.en,
            self.description.es,
            *self.notes.en,
            *self.notes.es,
        ):
            if RETIRED_WORDS.search(text):
                raise ValueError("mentions HAMP, which ended in 2016-2017 and must not be offered")
        return self

    def rank_for(self, tier: str) -> int:
        return self.rank.get(tier, self.rank.get("default", 0))


class Catalogue(_Strict):
    version: str = Field(min_length=1)
    option: tuple[Option, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Catalogue:
        seen: set[str] = set()
        for entry in self.option:
            if entry.code in seen:
                raise ValueError(f"option code {entry.code} appears twice")
            seen.add(entry.code)
        # An open case is shown as one option under way, never two.
        owner: dict[str, str] = {}
        for entry in self.option:
            for case_type in entry.case_types:
                if case_type in owner:
                    raise ValueError(
                        f"case type {case_type} is under way for both {owner[case_type]} and {entry.code}"
                    )
                owner[case_type] = entry.code
        return self

    def by_code(self) -> dict[str, Option]:
        return {o.code: o for o in self.option}


def parse_catalogue(raw: dict[str, Any], source: str = "catalogue") -> Catalogue:
    """Validate a catalogue mapping; errors name the source, the entry and the key."""
    try:
        return Catalogue.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc = list(err["loc"])
            where = ".".join(str(p) for p in loc) or "(top level)"
            if len(loc) >= 2 and loc[0] == "option" and isinstance(loc[1], int):
                entries = raw.get("option") or []
                code = (
                    entries[loc[1]].get("code", "?")
                    if loc[1] < len(entries) and isinstance(entries[loc[1]], dict)
                    else "?"
                )
                key = ".".join(str(p) for p in loc[2:]) or "(entry)"
                where = f"option {loc[1] + 1} ({code}): {key}"
            problems.append(f"{where}: {err['msg']}")
        raise CatalogueError(f"{source}: " + "; ".join(problems)) from None


# --------------------------------------------------------------------------- evaluation

_NO_TEXT = pl.lit(None, dtype=pl.String)


def _cltv() -> pl.Expr:
    return (
        pl.col("senior_lien_balance").fill_null(0).cast(pl.Float64)
        + pl.col("current_balance").cast(pl.Float64)
    ) / pl.col("property_value").cast(pl.Float64)


def _pct(expr: pl.Expr) -> pl.Expr:
    return (expr * 100).round(0, mode="half_away_from_zero").cast(pl.Int64).cast(pl.String) + "%"


def _ratio_text(value: Decimal) -> str:
    return f"{(value * 100).normalize():f}%"


def _words(values: Iterable[object]) -> str:
    return " or ".join(str(v).replace("_", " ") for v in values)


def _has_any(column: str, values: tuple[str, ...]) -> pl.Expr:
    return pl.col(column).list.eval(pl.element().is_in(list(values))).list.any().fill_null(False)


def _first_of(column: str, values: tuple[str, ...]) -> pl.Expr:
    return (
        pl.col(column)
        .list.set_intersection(pl.lit(list(values), dtype=pl.List(pl.String)))
        .list.first()
    )


def _rule_checks(rules: Rules, as_of: date) -> list[tuple[pl.Expr, pl.Expr, pl.Expr]]:
    """(holds, text when it holds, text when it does not) for each rule present."""
    dpd, checks = pl.col("days_past_due"), []
    if rules.min_days_past_due is not None:
        m = rules.min_days_past_due
        plain = dpd >= m
        if rules.or_signals:
            signal = _has_any("reasons", rules.or_signals)
            checks.append(
                (
                    plain | signal,
                    pl.when(plain)
                    .then(pl.format("{} days past due ({}+ needed)", dpd, pl.lit(m)))
                    .otherwise(
                        pl.format(
                            "{} days past due, but default is likely ({})",
                            dpd,
                            _first_of("reasons", rules.or_signals).str.replace_all("_", " "),
                        )
                    ),
                    pl.format(
                        "{} days past due ({}+ needed, or a sign of imminent default: {})",
                        dpd,
                        pl.lit(m),
                        pl.lit(_words(rules.or_signals)),
                    ),
                )
            )
        else:
            checks.append(
                (
                    plain,
                    pl.format("{} days past due ({}+ needed)", dpd, pl.lit(m)),
                    pl.format("{} days past due ({}+ needed)", dpd, pl.lit(m)),
                )
            )
    if rules.max_days_past_due is not None:
        m = rules.max_days_past_due
        text = pl.format("{} days past due ({} or fewer allowed)", dpd, pl.lit(m))
        checks.append((dpd <= m, _NO_TEXT, text))
    behind = pl.col("installments_behind")
    if rules.min_installments_behind is not None:
        m = rules.min_installments_behind
        text = pl.format("{} payments behind ({}+ needed)", behind, pl.lit(m))
        checks.append((behind >= m, text, text))
    if rules.max_installments_behind is not None:
        m = rules.max_installments_behind
        text = pl.format("{} payments behind ({} or fewer allowed)", behind, pl.lit(m))
        checks.append((behind <= m, _NO_TEXT, text))
    for column, allowed, label in (
        ("product", rules.products, "product"),
        ("occupancy", rules.occupancy, "occupancy"),
        ("property_state", rules.states, "property in"),
    ):
        if allowed is not None:
            value = pl.col(column).cast(pl.String)
            checks.append(
                (
                    value.is_in(list(allowed)).fill_null(False),
                    _NO_TEXT,
                    pl.format(
                        "{} {} (needs {})",
                        pl.lit(label),
                        value.str.replace_all("_", " "),
                        pl.lit(_words(allowed)),
                    ),
                )
            )
    if rules.lien_positions is not None:
        checks.append(
            (
                pl.col("lien_position").is_in(list(rules.lien_positions)),
                _NO_TEXT,
                pl.format(
                    "lien position {} (needs {})",
                    pl.col("lien_position"),
                    pl.lit(_words(rules.lien_positions)),
                ),
            )
        )
    if rules.min_loan_age_months is not None:
        m, age = rules.min_loan_age_months, pl.col("_age_months")
        text = pl.format("loan {} months old ({}+ needed)", age, pl.lit(m))
        checks.append((age >= m, text, text))
    if rules.min_months_to_maturity is not None:
        m, left = rules.min_months_to_maturity, pl.col("_months_left")
        text = pl.format("{} months to maturity ({}+ needed)", left, pl.lit(m))
        checks.append((left >= m, text, text))
    for bound, limit in (("min", rules.min_cltv), ("max", rules.max_cltv)):
        if limit is None:
            continue
        cltv = pl.col("_cltv")
        holds = (cltv >= float(limit)) if bound == "min" else (cltv < float(limit))
        need = (
            f"{_ratio_text(limit)} or more needed"
            if bound == "min"
            else f"below {_ratio_text(limit)} needed"
        )
        text = pl.format("combined loan-to-value {} ({})", _pct(cltv), pl.lit(need))
        checks.append(
            (
                holds.fill_null(False),
                text,
                pl.when(cltv.is_null())
                .then(pl.lit("no property value on file, so combined loan-to-value is unknown"))
                .otherwise(text),
            )
        )
    if rules.exclude_care:
        present = _has_any("care", rules.exclude_care)
        checks.append(
            (
                ~present,
                _NO_TEXT,
                pl.format(
                    "not while {}", _first_of("care", rules.exclude_care).str.replace_all("_", " ")
                ),
            )
        )
    if rules.require_care:
        present = _has_any("care", rules.require_care)
        checks.append(
            (
                present,
                pl.format(
                    "{} on file", _first_of("care", rules.require_care).str.replace_all("_", " ")
                ),
                pl.lit(f"only for borrowers with {_words(rules.require_care)} on file"),
            )
        )
    if rules.none_within_months is not None:
        col = "_recent_case_date"
        checks.append(
            (
                pl.col(col).is_null(),
                pl.lit(
                    f"no {_words(rules.none_within_case_types)} in the last {rules.none_within_months} months"
                ),
                pl.format(
                    "a {} began on {}, within {} months",
                    pl.lit(_words(rules.none_within_case_types)),
                    pl.col(col),
                    pl.lit(rules.none_within_months),
                ),
            )
        )
    if rules.max_used_months is not None:
        used, m = pl.col("_used_months"), rules.max_used_months
        text = pl.format(
            "{} of {} months of {} used", used, pl.lit(m), pl.lit(_words(rules.used_case_types))
        )
        checks.append((used < m, text, text))
    if rules.first_max_days_past_due is not None:
        checks.append(_first_start_check(rules.first_max_days_past_due, rules.used_case_types))
    if rules.opens is not None or rules.closes is not None:
        opened = rules.opens is None or rules.opens <= as_of
        still = rules.closes is None or as_of < rules.closes
        if not opened:
            checks.append((pl.lit(False), _NO_TEXT, pl.lit(f"the program opens on {rules.opens}")))
        elif not still:
            checks.append(
                (
                    pl.lit(False),
                    _NO_TEXT,
                    pl.lit(f"the program closed on {rules.closes} and takes no applications"),
                )
            )
        else:
            checks.append(
                (
                    pl.lit(True),
                    pl.lit(
                        f"the program takes applications until {rules.closes or 'further notice'}"
                    ),
                    _NO_TEXT,
                )
            )
    return checks


def _first_start_check(limit: int, case_types: tuple[str, ...]) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """A first plan of its kind starts by ``limit`` days past due; one already used may go on.

    Past that stage the plans that follow it (a repayment plan, a deferral) can no longer
    absorb the missed payments, so a first one would only add to them.
    """
    dpd, used, kind = pl.col("days_past_due"), pl.col("_used_months"), _words(case_types)
    return (
        (dpd <= limit) | (used > 0),
        pl.when(dpd > limit).then(
            pl.format("{} days past due, continuing a {} already begun", dpd, pl.lit(kind))
        ),
        pl.format(
            "{} days past due and no {} yet (a first one starts by {} days past due)",
            dpd,
            pl.lit(kind),
            pl.lit(limit),
        ),
    )


def _terms(option: Option) -> tuple[pl.Expr, dict[str, pl.Expr], pl.Expr]:
    """(terms possible, structured term columns, terms text) for an option's terms kind."""
    t = option.terms_settings
    none_money = pl.lit(None, dtype=pl.Decimal(14, 2))
    cols = {
        "plan_months": pl.lit(None, dtype=pl.Int32),
        "plan_payment": none_money,
        "plan_last_payment": none_money,
        "plan_installments": pl.lit(None, dtype=pl.List(pl.Decimal(14, 2))),
        "amount": none_money,
    }
    if option.terms == "repayment_plan":
        cols = {
            "plan_months": pl.col("_plan_months").cast(pl.Int32),
            "plan_payment": from_cents(pl.col("_first_installment")),
            "plan_last_payment": from_cents(pl.col("_last_installment")),
            "plan_installments": pl.col("_installments"),
            "amount": from_cents(pl.col("_arrears")),
        }
        ratio = _ratio_text(t.max_payment_ratio)
        text = (
            pl.when(pl.col("_arrears") <= 0)
            .then(pl.lit("nothing is past due to repay"))
            .when(pl.col("_plan_months").is_null())
            .then(
                pl.format(
                    "{} past due cannot be repaid within {} months at no more than {} of the {} regular payment",
                    money_text(pl.col("_arrears")),
                    pl.lit(t.max_months),
                    pl.lit(ratio),
                    money_text(pl.col("_regular")),
                )
            )
            .otherwise(
                pl.format(
                    "{} past due repaid over {} months: {} a month (the {} regular payment plus {}){}, the last {}; at most {} of the regular payment",
                    money_text(pl.col("_arrears")),
                    pl.col("_plan_months"),
                    money_text(pl.col("_first_installment")),
                    money_text(pl.col("_first_regular")),
                    money_text(pl.col("_extra")),
                    pl.col("_changes"),
                    money_text(pl.col("_last_installment")),
                    pl.lit(ratio),
                )
            )
        )
        return pl.col("_plan_months").is_not_null() & (pl.col("_arrears") > 0), cols, text
    if option.terms == "forbearance":
        left = pl.lit(t.total_months) - pl.col("_used_months")
        months = pl.min_horizontal(pl.lit(t.step_months), left)
        cols["plan_months"] = months.cast(pl.Int32)
        text = pl.format(
            "up to {} months now, in steps of {}; {} in all, {} left",
            months,
            pl.lit(t.step_months),
            pl.lit(t.total_months),
            left,
        )
        return left > 0, cols, text
    if option.terms == "payment_deferral":
        cols["plan_months"] = pl.col("installments_behind").cast(pl.Int32)
        cols["amount"] = from_cents(pl.col("_arrears"))
        text = pl.format(
            "{} missed payments ({}) moved to the end of the loan, without interest",
            pl.col("installments_behind"),
            money_text(pl.col("_arrears")),
        )
        return pl.col("_arrears") > 0, cols, text
    if option.terms == "lien_settlement":
        above = pl.min_horizontal(pl.col("_balance"), pl.col("_owed_all") - pl.col("_value"))
        cols["amount"] = from_cents(above)
        text = (
            pl.when(pl.col("_value").is_null())
            .then(pl.lit("no property value on file"))
            .when(above <= 0)
            .then(
                pl.format(
                    "the home's {} value covers both loans ({} owed)",
                    money_text(pl.col("_value")),
                    money_text(pl.col("_owed_all")),
                )
            )
            .otherwise(
                pl.format(
                    "about {} of this loan's {} balance is above the home's {} value after the {} first lien",
                    money_text(above),
                    money_text(pl.col("_balance")),
                    money_text(pl.col("_value")),
                    money_text(pl.col("_owed_all") - pl.col("_balance")),
                )
            )
        )
        return (above > 0).fill_null(False), cols, text
    return pl.lit(True), cols, _NO_TEXT


def _plan_dues(
    frame: pl.DataFrame, changes: pl.DataFrame, as_of: date, months: int
) -> pl.DataFrame:
    """The regular payment (cents) of each of the next ``months`` due dates of every loan
    with arrears: loan_id, _arrears, _k (0 = the next due date), _due, _due_regular.

    A plan's installments fall on the loan's own due dates, so a scheduled payment change
    (an ARM reset, a HELOC's end of draw) inside the plan raises or lowers the regular
    part of every installment from its effective due date on.
    """
    first = pl.col("first_payment_date")
    offset = _month_number(pl.col("next_due_date")) - _month_number(first)
    dues = (
        frame.filter(pl.col("_arrears") > 0)
        .select("loan_id", "_arrears", "_regular", first, offset.alias("_offset"))
        .with_columns(pl.int_ranges(0, months).alias("_k"))
        .explode("_k")
        .with_columns(
            due_date(first, (pl.col("_offset") + pl.col("_k")).cast(pl.Int32)).alias("_due")
        )
    )
    upcoming = (
        changes.filter(pl.col("effective_due_date") > as_of)
        .select("loan_id", "effective_due_date", cents(pl.col("scheduled_payment")).alias("_set"))
        .sort("effective_due_date")
    )
    # After the last installment there is no due date, and no change to look up.
    dated = dues.filter(pl.col("_due").is_not_null()).sort("_due")
    return (
        pl.concat(
            [
                dated.join_asof(
                    upcoming,
                    left_on="_due",
                    right_on="effective_due_date",
                    by="loan_id",
                    strategy="backward",
                    check_sortedness=False,  # both sorted by date: polars cannot tell, by loan
                ).drop("effective_due_date"),
                dues.filter(pl.col("_due").is_null()).with_columns(
                    pl.lit(None, dtype=pl.Int64).alias("_set")
                ),
            ]
        )
        .select(
            "loan_id",
            "_arrears",
            "_k",
            "_due",
            pl.coalesce("_set", "_regular").alias("_due_regular"),
        )
        .sort("loan_id", "_k")
    )


def _plan_search(
    frame: pl.DataFrame, changes: pl.DataFrame, catalogue: Catalogue, as_of: date
) -> pl.DataFrame:
    """Repayment plan months and installments for each loan, per repayment-plan option.

    For n months: extra = floor(arrears / n) cents a month on top of each month's regular
    payment, and the cents that do not divide go to the last installment. n is the
    fewest (or, with ``spread = "most_months"``, the most) months up to ``max_months``
    for which every installment, the last included, stays at or below
    ``max_payment_ratio`` of that month's regular payment.
    """
    plans = []
    for option in catalogue.option:
        if option.terms != "repayment_plan":
            continue
        t = option.terms_settings
        dues = _plan_dues(frame, changes, as_of, t.max_months)
        cap = (
            (pl.col("_due_regular").cast(pl.Float64) * float(t.max_payment_ratio - 1) + 1e-6)
            .floor()
            .cast(pl.Int64)
        )
        n = pl.col("_k") + 1
        chosen = (
            dues.with_columns(cap.alias("_cap"), (pl.col("_arrears") // n).alias("_extra"))
            .with_columns(
                # every installment before the last carries the same extra
                pl.col("_cap").cum_min().shift(1).over("loan_id").alias("_earlier_cap"),
                (pl.col("_arrears") - pl.col("_extra") * (n - 1)).alias("_last_extra"),
            )
            .filter(
                (pl.col("_last_extra") <= pl.col("_cap"))
                & (pl.col("_earlier_cap").is_null() | (pl.col("_extra") <= pl.col("_earlier_cap")))
            )
            .sort("loan_id", "_k", descending=[False, t.spread == "most_months"])
            .group_by("loan_id", maintain_order=True)
            .first()
            .select("loan_id", n.alias("_plan_months"), "_extra", "_last_extra")
        )
        plans.append(
            _installments(dues, chosen).with_columns(pl.lit(option.code).alias("option_code"))
        )
    if not plans:
        return pl.DataFrame(
            schema={
                "loan_id": pl.String,
                "_plan_months": pl.Int64,
                "_extra": pl.Int64,
                "_first_regular": pl.Int64,
                "_first_installment": pl.Int64,
                "_last_installment": pl.Int64,
                "_installments": pl.List(pl.Decimal(14, 2)),
                "_changes": pl.String,
                "option_code": pl.String,
            }
        )
    return pl.concat(plans)


def _installments(dues: pl.DataFrame, chosen: pl.DataFrame) -> pl.DataFrame:
    """Each chosen plan's installments in order, and its payment changes in words."""
    last = pl.col("_k") == pl.col("_plan_months") - 1
    installment = pl.col("_due_regular") + pl.when(last).then("_last_extra").otherwise("_extra")
    changed = pl.col("_due_regular") != pl.col("_due_regular").shift(1).over("loan_id")
    return (
        dues.join(chosen, on="loan_id")
        .filter(pl.col("_k") < pl.col("_plan_months"))
        .sort("loan_id", "_k")
        .with_columns(installment.alias("_installment"))
        .with_columns(
            pl.when(changed)
            .then(
                pl.format(
                    ", then {} a month from {} (the regular payment becomes {})",
                    money_text(pl.col("_installment")),
                    pl.col("_due"),
                    money_text(pl.col("_due_regular")),
                )
            )
            .alias("_change")
        )
        .group_by("loan_id", maintain_order=True)
        .agg(
            pl.col("_plan_months").first(),
            pl.col("_extra").first(),
            pl.col("_due_regular").first().alias("_first_regular"),
            pl.col("_installment").first().alias("_first_installment"),
            pl.col("_installment").last().alias("_last_installment"),
            from_cents(pl.col("_installment")).alias("_installments"),
            pl.col("_change").str.join(""),
        )
        .rename({"_change": "_changes"})
    )


def _case_facts(
    inputs: pl.DataFrame, cases: pl.DataFrame, option: Option, as_of: date
) -> pl.DataFrame:
    """Per loan: the latest case of the rule's types opened within the window, and months used."""
    rules = inputs.select("loan_id")
    r = option.rules
    mine = cases.filter(pl.col("opened_date") <= as_of)
    if r.none_within_months is not None:
        since = pl.lit(as_of).dt.offset_by(f"-{r.none_within_months}mo")
        recent = (
            mine.filter(
                pl.col("case_type").is_in(list(r.none_within_case_types))
                & (pl.col("opened_date") > since)
            )
            .group_by("loan_id")
            .agg(pl.col("opened_date").max().alias("_recent_case_date"))
        )
        rules = rules.join(recent, on="loan_id", how="left")
    else:
        rules = rules.with_columns(pl.lit(None, dtype=pl.Date).alias("_recent_case_date"))
    if r.used_case_types:
        end = pl.min_horizontal(pl.col("closed_date").fill_null(as_of), pl.lit(as_of))
        # Whole or part months: a case open 1 to 31 days counts one month.
        months = (
            ((end - pl.col("opened_date")).dt.total_days() / 30.4375)
            .ceil()
            .cast(pl.Int64)
            .clip(lower_bound=1)
        )
        used = (
            mine.filter(pl.col("case_type").is_in(list(r.used_case_types)))
            .group_by("loan_id")
            .agg(months.sum().alias("_used_months"))
        )
        rules = rules.join(used, on="loan_id", how="left").with_columns(
            pl.col("_used_months").fill_null(0)
        )
    else:
        rules = rules.with_columns(pl.lit(0, dtype=pl.Int64).alias("_used_months"))
    return rules


OUTPUT_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "as_of_date": pl.Date,
    "loan_id": pl.String,
    "borrower_id": pl.String,
    "option_code": pl.String,
    "eligible": pl.Boolean,
    "rank": pl.Int32,
    "rationale": pl.String,
    "offer": pl.Boolean,
    "plan_months": pl.Int32,
    "plan_payment": pl.Decimal(14, 2),
    "plan_last_payment": pl.Decimal(14, 2),
    "plan_installments": pl.List(pl.Decimal(14, 2)),
    "amount": pl.Decimal(14, 2),
    "terms": pl.String,
    "notes": pl.List(pl.String),
    "catalogue_version": pl.String,
}
_TERM_COLUMNS = (
    "plan_months",
    "plan_payment",
    "plan_last_payment",
    "plan_installments",
    "amount",
    "terms",
)


def evaluate(
    inputs: pl.DataFrame,
    cases: pl.DataFrame,
    catalogue: Catalogue,
    as_of: date,
    language: str = "en",
    payment_changes: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One row per flagged loan per catalogue option (columns :data:`OUTPUT_SCHEMA`).

    ``inputs`` has :data:`INPUT_COLUMNS`; ``cases`` is the loss_mit feed
    (:data:`CASE_COLUMNS`); ``payment_changes`` the scheduled payment changes
    (:data:`CHANGE_COLUMNS`), none if not given. Rank 1 is the best fit among the
    eligible: the catalogue's rank for the loan's tier, then the option code.
    """
    if language not in LANGUAGES:
        raise ValueError(f"language {language}: known {', '.join(LANGUAGES)}")
    if inputs.is_empty():
        return pl.DataFrame(schema=OUTPUT_SCHEMA)
    if payment_changes is None:
        payment_changes = pl.DataFrame(
            schema={
                "loan_id": pl.String,
                "effective_due_date": pl.Date,
                "scheduled_payment": pl.Decimal(14, 2),
            }
        )
    cases = cases.select(CASE_COLUMNS)
    base = (
        inputs.with_columns(
            cents(pl.col("amount_past_due")).clip(lower_bound=0).alias("_arrears"),
            cents(pl.col("installment_amount")).alias("_regular"),
            cents(pl.col("current_balance")).alias("_balance"),
            cents(pl.col("property_value")).alias("_value"),
            (
                cents(pl.col("senior_lien_balance").fill_null(0)) + cents(pl.col("current_balance"))
            ).alias("_owed_all"),
            _cltv().alias("_cltv"),
            _months_between(pl.col("origination_date"), pl.lit(as_of)).alias("_age_months"),
            _months_between(
                pl.lit(as_of),
                due_date(pl.col("first_payment_date"), (pl.col("term_months") - 1).cast(pl.Int32)),
            ).alias("_months_left"),
        )
        .join(_open_case_facts(cases, as_of), on="loan_id", how="left")
        .with_row_index("_loan")  # an integer key per loan: ranking within a loan groups on it
    )
    plans = _plan_search(base, payment_changes.select(CHANGE_COLUMNS), catalogue, as_of)
    frames = [
        _option_rows(option, base, cases, plans, as_of, language) for option in catalogue.option
    ]
    # Options in code order, so that the rank key (catalogue rank, then code) is one integer.
    order = {code: i for i, code in enumerate(sorted(o.code for o in catalogue.option))}
    key = pl.col("_rank").cast(pl.Int64) * 10_000 + pl.col("option_code").replace_strict(
        order, return_dtype=pl.Int64
    )
    return (
        pl.concat(frames, how="diagonal_relaxed")
        .with_columns(
            pl.when(pl.col("eligible"))
            .then(key)
            .rank("ordinal")
            .over("_loan")
            .cast(pl.Int32)
            .alias("rank"),
            *(pl.when(pl.col("eligible")).then(pl.col(c)).alias(c) for c in _TERM_COLUMNS),
            pl.lit(as_of).alias("as_of_date"),
            pl.lit(catalogue.version).alias("catalogue_version"),
        )
        .select([pl.col(name).cast(dtype) for name, dtype in OUTPUT_SCHEMA.items()])
        .collect()
    )


def _option_rows(
    option: Option,
    base: pl.DataFrame,
    cases: pl.DataFrame,
    plans: pl.DataFrame,
    as_of: date,
    language: str,
) -> pl.LazyFrame:
    """One option's row for every loan: eligible or not, why, its terms and its rank key."""
    frame = base.lazy()
    if option.rules.none_within_months is not None or option.rules.used_case_types:
        frame = frame.join(_case_facts(base, cases, option, as_of).lazy(), on="loan_id", how="left")
    else:
        frame = frame.with_columns(
            pl.lit(None, dtype=pl.Date).alias("_recent_case_date"),
            pl.lit(0, dtype=pl.Int64).alias("_used_months"),
        )
    if option.terms == "repayment_plan":
        frame = frame.join(
            plans.lazy().filter(pl.col("option_code") == option.code).drop("option_code"),
            on="loan_id",
            how="left",
        )
    checks = _rule_checks(option.rules, as_of)
    if not option.referral:
        checks += _standing_checks()
    possible, term_cols, terms_text = _terms(option)
    holds = pl.all_horizontal([c[0] for c in checks]) if checks else pl.lit(True)
    under_way = _has_any("_open_types", option.case_types) if option.case_types else pl.lit(False)
    closed = CLOSED_FOR_GOOD.get(option.code)
    notes = list(getattr(option.notes, language))
    states = option.notes_states
    return frame.with_columns(
        (
            (under_way | (holds.fill_null(False) & possible.fill_null(False)))
            & pl.lit(closed is None)
        ).alias("eligible"),
        under_way.alias("_under_way"),
        _joined([pl.when(c[0]).then(c[1]) for c in checks] + [terms_text]).alias("_fits"),
        _joined([pl.when(~c[0]).then(c[2]) for c in checks]).alias("_fails"),
        # The open case has terms of its own: the catalogue's would contradict them.
        pl.when(under_way)
        .then(pl.lit("set by the open case"))
        .otherwise(terms_text)
        .alias("terms"),
        *(pl.when(~under_way).then(expr).alias(name) for name, expr in term_cols.items()),
    ).select(
        "_loan",
        "loan_id",
        "borrower_id",
        "eligible",
        "terms",
        *term_cols,
        _rank_expr(option).alias("_rank"),
        pl.lit(option.code).alias("option_code"),
        pl.lit(option.offer).alias("offer"),
        _rationale(closed).alias("rationale"),
        (
            pl.lit(notes, dtype=pl.List(pl.String))
            if states is None
            else pl.when(pl.col("property_state").is_in(list(states)))
            .then(pl.lit(notes, dtype=pl.List(pl.String)))
            .otherwise(pl.lit([], dtype=pl.List(pl.String)))
        ).alias("notes"),
    )


def _rank_expr(option: Option) -> pl.Expr:
    """The catalogue's rank of the option for the loan's tier."""
    rank = pl.lit(option.rank_for("default"))
    for tier in TIERS:
        if tier in option.rank:
            rank = pl.when(pl.col("tier") == tier).then(pl.lit(option.rank[tier])).otherwise(rank)
    return rank


def _open_case_facts(cases: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """Per loan with a loss-mitigation case open on the night: its case types (_open_types)
    and the cases in words (_open_text), oldest first."""
    return (
        open_cases(cases, as_of)
        .sort("loan_id", "opened_date", "case_type")
        .group_by("loan_id", maintain_order=True)
        .agg(
            pl.col("case_type").alias("_open_types"),
            pl.format(
                "{} (open since {})",
                pl.col("case_type").replace(CASE_WORDS),
                pl.col("opened_date"),
            )
            .str.join(" and ")
            .alias("_open_text"),
        )
    )


def _standing_checks() -> list[tuple[pl.Expr, pl.Expr, pl.Expr]]:
    """(holds, text when it holds, text when not) of the rules no catalogue can lift.

    A loan in an open loss-mitigation case is worked in that case: a second offer would
    compete with it (and an application is being evaluated for every option already).
    A current loan whose only sign is being underwater shows no hardship to work out.
    """
    dpd, reasons = pl.col("days_past_due"), pl.col("reasons")
    hardship = reasons.list.set_difference(pl.lit(list(NOT_HARDSHIP), dtype=pl.List(pl.String)))
    current_without_hardship = (dpd == 0) & (hardship.list.len().fill_null(0) == 0)
    return [
        (
            pl.col("_open_text").is_null(),
            _NO_TEXT,
            pl.format("held back while a loss-mitigation case is open: {}", pl.col("_open_text")),
        ),
        (
            ~current_without_hardship,
            _NO_TEXT,
            pl.when(_has_any("reasons", NOT_HARDSHIP))
            .then(
                pl.lit(
                    "current, and being underwater is its only sign: the home's value is not a "
                    "hardship, so the borrower is invited to call rather than offered options"
                )
            )
            .otherwise(
                pl.lit(
                    "current, with no sign of hardship: the borrower is invited to call rather "
                    "than offered options"
                )
            ),
        ),
    ]


def _joined(parts: list[pl.Expr]) -> pl.Expr:
    """The non-null texts, joined with "; " (empty when there are none)."""
    if not parts:
        return pl.lit("")
    return pl.concat_str(parts, separator="; ", ignore_nulls=True).fill_null("")


def _rationale(closed: str | None) -> pl.Expr:
    if closed is not None:
        return pl.lit(f"Not available: {closed}.")
    return (
        pl.when(pl.col("_under_way"))
        .then(
            pl.format(
                "Fits: under way in an open loss-mitigation case: {}; the case sets its terms.",
                pl.col("_open_text"),
            )
        )
        .when(pl.col("eligible"))
        .then(
            pl.when(pl.col("_fits") == "")
            .then(pl.lit("Fits: open to every flagged borrower."))
            .otherwise(pl.format("Fits: {}.", pl.col("_fits")))
        )
        .when(pl.col("_fails") != "")
        .then(pl.format("Does not fit: {}.", pl.col("_fails")))
        .otherwise(pl.format("Does not fit: {}.", pl.col("terms")))
    )


def _month_number(day: pl.Expr) -> pl.Expr:
    """Months since year 0: the difference of two is the months between their due dates."""
    return day.dt.year().cast(pl.Int32) * 12 + day.dt.month().cast(pl.Int32)


def _months_between(start: pl.Expr, end: pl.Expr) -> pl.Expr:
    """Whole months from ``start`` to ``end`` (a month counts once its day is reached)."""
    months = _month_number(end) - _month_number(start)
    return (months - (end.dt.day() < start.dt.day()).cast(pl.Int32)).cast(pl.Int64)
