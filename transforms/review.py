"""The review page's and exports' pure parts: what the page's data and the analysts'
spreadsheets are made of, from frames the review step reads.

- :func:`queue_json`: the queue rows and call list as the page's compact JSON data;
- :func:`decision_text`, :func:`reason_kind`, :func:`direction`: words for the page;
- :func:`queue_export`, :func:`call_export`: the queue and call list as the team's
  spreadsheets, with text cells a spreadsheet will not run as formulas.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import polars as pl

from transforms import cases
from transforms.contract import BUCKETS, CARE_FLAGS, SIGNALS, TIERS


def direction(origin: str, target: str) -> str:
    """Whether a roll from ``origin`` to ``target`` is a cure, a stay or a roll forward."""
    if origin not in BUCKETS or target not in BUCKETS:
        return "other"
    step = BUCKETS.index(target) - BUCKETS.index(origin)
    return "worse" if step > 0 else "better" if step < 0 else "same"


IDENTIFIER = re.compile(r"\b(?:\d{4}-\d{2}-\d{2}|(?=[\w-]*[A-Za-z])(?=[\w-]*\d)[\w-]+)\b")


def reason_kind(reason: str) -> str:
    """A suppression reason as a kind: the part before any colon, with the ids and dates
    that make it one letter's replaced by "…" (counts such as "14 days" are kept)."""
    return IDENTIFIER.sub("…", reason.split(":", 1)[0]).strip()


class Strings:
    """Repeated texts (option rationales, terms, reasons) stored once and referred to by index."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self._index: dict[str, int] = {}

    def __call__(self, text: str | None) -> int | None:
        if text is None:
            return None
        if text not in self._index:
            self._index[text] = len(self.items)
            self.items.append(text)
        return self._index[text]


def trimmed(values: list[Any]) -> list[Any]:
    while values and values[-1] is None:
        values.pop()
    return values


def money(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def day(value: date | datetime | None) -> str | None:
    return None if value is None else value.isoformat()[:10]


def decision_text(decision: dict[str, Any], promise: dict[str, Any] | None) -> str | None:
    """What a decision says, in words, for the case history."""
    parts = []
    if decision["kind"] == "promise":
        parts.append(f"${decision['promise_amount']:,.2f} by {decision['promise_date']}")
        if promise is not None:
            parts.append(f"{promise['status']} (${promise['paid_toward']:,.2f} paid toward it)")
    if decision["letter_id"]:
        parts.append(f"letter {decision['letter_id']}")
    if decision["note"]:
        parts.append(decision["note"])
    return "; ".join(parts) or None


def queue_json(queue: pl.DataFrame, call: pl.DataFrame) -> dict[str, Any]:
    """The queue rows, compact: categories as indexes into the lists sent alongside; and the
    call list, in its order, as the loan and what only the call list shows."""
    products = sorted(set(queue["product"].drop_nulls().to_list()))
    languages = sorted(set(queue["language"].drop_nulls().to_list()))
    letters = ["generated", "held", "suppressed", "none"]
    tiers, reasons, care, events = list(TIERS), list(SIGNALS), list(CARE_FLAGS), list(cases.EVENTS)

    def at(values: list[str], value: str | None) -> int | None:
        return values.index(value) if value in values else None

    rows = [
        [
            r["loan_id"],
            r["borrower_name"] or "",
            at(tiers, r["tier"]),
            money(r["score"]),
            r["days_past_due"],
            r["queue_rank"],
            int(bool(r["in_queue"])),
            [at(reasons, x) for x in r["reasons"] or []],
            [at(care, x) for x in r["care"] or []],
            at(products, r["product"]),
            r["property_state"],
            at(languages, r["language"]),
            at(letters, r["letter_status"]),
            money(r["amount_past_due"]),
            money(r["current_balance"]),
            at(events, r["case_event"]),
            day(r["case_opened_date"]),
            day(r["live_contact_due_date"]),
            r["borrower_id"],
            r["letter_template"],
            None if r["risk"] is None else round(r["risk"], 4),
            int(r["queue"] == "default"),
            None if r["expected_loss"] is None else round(r["expected_loss"], 2),
        ]
        for r in queue.iter_rows(named=True)
    ]
    calls = [
        [
            r["loan_id"],
            cases.CALL_STATUSES.index(r["call_status"]),
            r["phone"],
            day(r["last_contact_date"]),
            day(r["delinquency_start_date"]),
            day(r["written_notice_due_date"]),
        ]
        for r in call.iter_rows(named=True)
    ]
    return {
        "tiers": tiers,
        "reasons": reasons,
        "care": care,
        "products": products,
        "languages": languages,
        "letters": letters,
        "events": events,
        "rows": rows,
        "callStatuses": list(cases.CALL_STATUSES),
        "calls": calls,
    }


# A text starting with one of = + - @ tab or carriage return is a formula to a spreadsheet.
FORMULA_START = r"^[=+\-@\t\r]"


def safe_text(column: pl.Expr) -> pl.Expr:
    """Text cells a spreadsheet will not run as formulas (a leading quote when needed)."""
    return pl.when(column.str.contains(FORMULA_START)).then(pl.lit("'") + column).otherwise(column)


QUEUE_EXPORT = {
    "queue": "list",
    "queue_rank": "queue_rank",
    "in_queue": "in_queue",
    "loan_id": "loan_id",
    "borrower_id": "borrower_id",
    "borrower_name": "borrower_name",
    "tier": "tier",
    "risk": "risk",
    "expected_loss": "expected_loss",
    "risk_model": "risk_model",
    "score": "score",
    "days_past_due": "days_past_due",
    "amount_past_due": "amount_past_due",
    "current_balance": "current_balance",
    "reasons": "reasons",
    "care": "care",
    "product": "product",
    "property_state": "state",
    "language": "language",
    "letter_template": "letter_template",
    "letter_status": "letter_status",
    "suppression_reason": "suppression_reason",
    "case_id": "case_id",
    "case_opened_date": "case_opened_date",
    "case_event": "case_event_tonight",
    "live_contact_due_date": "live_contact_due_date",
    "written_notice_due_date": "written_notice_due_date",
    "senior_days_past_due": "senior_days_past_due",
}
CALL_EXPORT = {
    "call_status": "call_status",
    "live_contact_due_date": "live_contact_due_date",
    "queue_rank": "queue_rank",
    "loan_id": "loan_id",
    "borrower_id": "borrower_id",
    "borrower_name": "borrower_name",
    "phone": "phone",
    "language": "language",
    "tier": "tier",
    "days_past_due": "days_past_due",
    "amount_past_due": "amount_past_due",
    "delinquency_start_date": "delinquency_start_date",
    "last_contact_date": "last_contact_date",
    "written_notice_due_date": "written_notice_due_date",
}


def export_frame(frame: pl.DataFrame, columns: dict[str, str]) -> pl.DataFrame:
    out = frame.select([pl.col(k).alias(v) for k, v in columns.items()])
    lists = [n for n, t in out.schema.items() if isinstance(t, pl.List)]
    out = out.with_columns([pl.col(n).list.join("; ") for n in lists])
    texts = [n for n, t in out.schema.items() if t == pl.String]
    return out.with_columns([safe_text(pl.col(n)).alias(n) for n in texts])


def queue_export(queue: pl.DataFrame) -> pl.DataFrame:
    """The queue as the analysts' spreadsheet: one row per flagged loan, lists joined by "; "."""
    return export_frame(queue, QUEUE_EXPORT)


def call_export(call: pl.DataFrame) -> pl.DataFrame:
    """The call list as the team's dialling sheet, in its order."""
    return export_frame(call, CALL_EXPORT)
