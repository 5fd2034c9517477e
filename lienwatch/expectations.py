"""Great Expectations suites for every feed, kept as code.

This is the only module that imports Great Expectations. Each feed's suite covers the
required columns, not-null keys, allowed values, ranges, uniqueness and references.
Uniqueness across every file ever loaded and references into the warehouse cannot be
seen in one batch, so the ingest step computes them in SQL as check columns (``_dup``,
``_loan_known``, ...) and the suite states the expectation on those columns; the rule,
the column and the message an operator reads are in each expectation's ``meta``.

Severity, in ``meta``: ``error`` quarantines the row; ``duplicate`` quarantines a row
that repeats one already taken in (it changes nothing); ``warning`` is recorded in the
validation result only.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

import pandas as pd

from transforms.contract import FEEDS, Feed

EARLIEST = datetime(1950, 1, 1)
LATEST = datetime(2100, 12, 31)


@dataclass(frozen=True)
class Failure:
    """One row that failed one expectation."""

    key: int
    column_name: str | None
    rule: str
    message: str
    severity: str


def _e(
    gx: Any,
    kind: str,
    rule: str,
    message: str,
    column: str | None = None,
    severity: str = "error",
    **kwargs: Any,
) -> Any:
    cls = getattr(gx.expectations, kind)
    if column is not None and "column_A" not in kwargs:
        kwargs.setdefault("column", column)
    return cls(
        meta={"rule": rule, "column": column, "message": message, "severity": severity}, **kwargs
    )


def _common(gx: Any, feed: Feed) -> list[Any]:
    suite = []
    for column in feed.columns:
        if column.required:
            suite.append(
                _e(gx, "ExpectColumnToExist", "column", f"{column.name} column", column.name)
            )
        if not column.nullable:
            suite.append(
                _e(
                    gx,
                    "ExpectColumnValuesToNotBeNull",
                    "required",
                    f"{column.name} is empty",
                    column.name,
                )
            )
        if column.allowed is not None:
            allowed = list(column.allowed)
            suite.append(
                _e(
                    gx,
                    "ExpectColumnValuesToBeInSet",
                    "allowed_values",
                    f"{column.name} must be one of {', '.join(map(str, allowed))}",
                    column.name,
                    value_set=allowed,
                )
            )
        if column.kind == "date":
            suite.append(
                _e(
                    gx,
                    "ExpectColumnValuesToBeBetween",
                    "plausible_date",
                    f"{column.name} is not between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}",
                    column.name,
                    min_value=EARLIEST,
                    max_value=LATEST,
                )
            )
    suite.append(
        _flag(
            gx,
            "_dup",
            "unique",
            f"{' + '.join(feed.key)} repeats an earlier row of this file",
            feed.key[0],
        )
    )
    return suite


def _flag(
    gx: Any, flag: str, rule: str, message: str, column: str | None, severity: str = "error"
) -> Any:
    """An expectation that a boolean check column computed in SQL is false everywhere."""
    return gx.expectations.ExpectColumnValuesToBeInSet(
        column=flag,
        value_set=[False],
        meta={"rule": rule, "column": column, "message": message, "severity": severity},
    )


def _positive(gx: Any, column: str, strict: bool = True, maximum: float | None = None) -> Any:
    word = "greater than 0" if strict else "0 or more"
    return _e(
        gx,
        "ExpectColumnValuesToBeBetween",
        "range",
        f"{column} must be {word}",
        column,
        min_value=0,
        strict_min=strict,
        max_value=maximum,
    )


def _loans(gx: Any) -> list[Any]:
    return [
        _positive(gx, "scheduled_payment"),
        _e(
            gx,
            "ExpectColumnValuesToBeBetween",
            "range",
            "term_months must be 1 to 600",
            "term_months",
            min_value=1,
            max_value=600,
        ),
        _e(
            gx,
            "ExpectColumnValuesToBeBetween",
            "range",
            "interest_rate must be 0 to 30 percent",
            "interest_rate",
            min_value=0,
            max_value=30,
        ),
        _positive(gx, "original_balance", strict=False),
        _positive(gx, "current_balance", strict=False),
        _positive(gx, "property_value"),
        _positive(gx, "senior_lien_balance", strict=False),
        _e(
            gx,
            "ExpectColumnValuesToMatchRegex",
            "format",
            "property_state must be a 2-letter code",
            "property_state",
            regex=r"^[A-Z]{2}$",
        ),
        _e(
            gx,
            "ExpectColumnPairValuesAToBeGreaterThanB",
            "date_order",
            "first_payment_date is before origination_date",
            "first_payment_date",
            column_A="first_payment_date",
            column_B="origination_date",
            or_equal=True,
            ignore_row_if="either_value_is_missing",
        ),
        _flag(
            gx, "_borrower_unknown", "reference", "borrower_id is not in borrowers", "borrower_id"
        ),
        _flag(
            gx,
            "_draw_end_not_heloc",
            "consistency",
            "draw_period_end is set on a loan that is not a HELOC",
            "draw_period_end",
            severity="warning",
        ),
    ]


def _borrowers(gx: Any) -> list[Any]:
    return [
        _e(
            gx,
            "ExpectColumnValuesToMatchRegex",
            "format",
            "state must be a 2-letter code",
            "state",
            regex=r"^[A-Z]{2}$",
        ),
        _e(
            gx,
            "ExpectColumnValuesToMatchRegex",
            "format",
            "zip is not a 5 or 9 digit ZIP code",
            "zip",
            regex=r"^\d{5}(?:-?\d{4})?$",
            severity="warning",
        ),
        _flag(
            gx,
            "_bankruptcy_date_without_flag",
            "consistency",
            "bankruptcy_filed_date is set but bankruptcy is false",
            "bankruptcy_filed_date",
            severity="warning",
        ),
    ]


def _payments(gx: Any) -> list[Any]:
    return [
        _positive(gx, "amount"),
        _flag(
            gx,
            "_loaded_before",
            "already_loaded",
            "txn_id was already taken in from an earlier file",
            "txn_id",
            severity="duplicate",
        ),
        _flag(gx, "_loan_unknown", "reference", "loan_id is not a known loan", "loan_id"),
        gx.expectations.ExpectColumnValuesToBeNull(
            column="_reversal_problem",
            meta={
                "rule": "reversal",
                "column": "reverses_txn_id",
                "severity": "error",
                "message": "reversal does not match a payment it can undo",
            },
        ),
    ]


def _payment_changes(gx: Any) -> list[Any]:
    return [
        _positive(gx, "scheduled_payment"),
        _flag(gx, "_loan_unknown", "reference", "loan_id is not a known loan", "loan_id"),
    ]


def _senior_liens(gx: Any) -> list[Any]:
    return [
        _e(
            gx,
            "ExpectColumnValuesToBeBetween",
            "range",
            "senior_days_past_due must be 0 to 36500",
            "senior_days_past_due",
            min_value=0,
            max_value=36500,
        ),
        _flag(gx, "_loan_unknown", "reference", "loan_id is not a known loan", "loan_id"),
    ]


def _loss_mit(gx: Any) -> list[Any]:
    return [
        _flag(gx, "_loan_unknown", "reference", "loan_id is not a known loan", "loan_id"),
        _e(
            gx,
            "ExpectColumnPairValuesAToBeGreaterThanB",
            "date_order",
            "closed_date is before opened_date",
            "closed_date",
            column_A="closed_date",
            column_B="opened_date",
            or_equal=True,
            ignore_row_if="either_value_is_missing",
        ),
        _flag(
            gx,
            "_closed_without_date",
            "consistency",
            "a closed case has no closed_date",
            "closed_date",
            severity="warning",
        ),
    ]


def _letter_history(gx: Any) -> list[Any]:
    return [_flag(gx, "_loan_unknown", "reference", "loan_id is not a known loan", "loan_id")]


SPECIFIC = {
    "loans": _loans,
    "borrowers": _borrowers,
    "payments": _payments,
    "payment_changes": _payment_changes,
    "senior_liens": _senior_liens,
    "loss_mit": _loss_mit,
    "letter_history": _letter_history,
}


_warming: threading.Thread | None = None


def warm_up() -> None:
    """Start loading Great Expectations in the background (idempotent).

    Importing it takes seconds (it pulls in scipy and builds hundreds of classes); a
    night starts this before the flow starts, so the import overlaps with the start of
    Prefect's temporary server instead of adding to the ingest step.
    """
    global _warming
    if _warming is None:
        _warming = threading.Thread(target=_gx, name="great-expectations-warm-up", daemon=True)
        _warming.start()


@cache
def _gx() -> tuple[Any, Any]:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    for name in ("great_expectations", "great_expectations.data_context.types.base"):
        logging.getLogger(name).setLevel(logging.WARNING)

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return gx, context


@cache
def _validation(feed_name: str) -> Any:
    if _warming is not None:
        _warming.join()  # then _gx() is cached, or raises here if the warm-up failed
    gx, context = _gx()
    suite = gx.ExpectationSuite(name=f"lienwatch_{feed_name}")
    for expectation in _common(gx, FEEDS[feed_name]) + SPECIFIC[feed_name](gx):
        suite.add_expectation(expectation)
    suite = context.suites.add(suite)
    asset = context.data_sources.add_pandas(f"landing_{feed_name}").add_dataframe_asset(feed_name)
    batch = asset.add_batch_definition_whole_dataframe(f"{feed_name}_new_rows")
    return context.validation_definitions.add(
        gx.ValidationDefinition(name=f"validate_{feed_name}", data=batch, suite=suite)
    )


def validate(feed_name: str, frame: pd.DataFrame) -> tuple[list[Failure], dict[str, Any]]:
    """Run the feed's suite on ``frame`` (indexed by row key); failures and the result JSON."""
    if frame.empty:
        return [], {"success": True, "statistics": {"evaluated_expectations": 0}, "results": []}
    result = _validation(feed_name).run(
        batch_parameters={"dataframe": frame},
        result_format={"result_format": "COMPLETE", "partial_unexpected_count": 0},
    )
    failures: list[Failure] = []
    for item in result.results:
        if item.success:
            continue
        meta = item.expectation_config.meta or {}
        keys = item.result.get("unexpected_index_list")
        if keys is None:  # a table-level expectation (a missing column) fails the whole batch
            info = item.exception_info or {}
            raise RuntimeError(
                f"{feed_name}: expectation {item.expectation_config.type} on "
                f"{item.expectation_config.kwargs.get('column')} could not run: "
                f"{info.get('exception_message', info)}"
            )
        message = meta.get("message", item.expectation_config.type)
        per_row = frame["_reversal_problem"] if meta.get("rule") == "reversal" else None
        for entry in keys:
            key = entry[frame.index.name] if isinstance(entry, dict) else entry
            text = message if per_row is None else f"{message}: {per_row.loc[key]}"
            failures.append(
                Failure(
                    int(key),
                    meta.get("column"),
                    meta.get("rule", "?"),
                    text,
                    meta.get("severity", "error"),
                )
            )
    payload = result.to_json_dict()
    for item in payload.get("results", []):  # row lists can be long; the counts stay
        item.get("result", {}).pop("unexpected_index_list", None)
        item.get("result", {}).pop("unexpected_list", None)
        item.get("result", {}).pop("unexpected_index_query", None)
    return failures, payload
