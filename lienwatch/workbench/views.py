"""What the workbench's pages show, read from the snapshot the last completed night
published (:mod:`lienwatch.workbench.publish`), read-only, and never from the warehouse
the night writes. The pages add what analysts did since (the store) themselves."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import duckdb

from lienwatch.review.page import LETTERS_SHOWN
from lienwatch.workbench.snapshot import POINTER, current
from transforms.contract import CARE_FLAGS, SIGNALS, TIERS
from transforms.flags import QUEUES

LETTER_STATUSES = ("generated", "held", "suppressed", "none")
SORTS = {
    "rank": "queue_rank",
    "loan": "loan_id",
    "name": "borrower_name",
    "score": "score",
    "dpd": "days_past_due",
    "past_due": "amount_past_due",
    "balance": "current_balance",
    "state": "property_state",
}
QUEUE_COLUMNS = """queue_rank, in_queue, queue, loan_id, borrower_name, tier, score, days_past_due,
    amount_past_due, current_balance, reasons, care, property_state, language, letter_status,
    case_id, live_contact_due_date"""


@dataclass
class Night:
    """One published night: its read-only connection and what it says of itself."""

    path: Path
    con: duckdb.DuckDBPyConnection
    as_of: date
    night_dir: str
    figures: dict[str, Any]
    choices: dict[str, list[str]] = field(default_factory=dict)
    history_months: list[str] = field(default_factory=list)  # the payment history's labels

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self.con.cursor()


class Published:
    """The snapshot the last completed night published: reopened when a night switches
    the pointer, so a page always reads one whole night, never half of two."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._seen: tuple[int, int] | None = None
        self._night: Night | None = None
        self._older: list[Night] = []

    def night(self) -> Night | None:
        try:
            stat = os.stat(self.folder / POINTER)
            seen = (stat.st_ino, stat.st_mtime_ns)
        except FileNotFoundError:
            return None
        if seen == self._seen:
            return self._night
        with self._lock:
            if seen != self._seen:
                path = current(self.folder)
                if path is not None and (self._night is None or self._night.path != path):
                    if self._night is not None:
                        # still read by pages drawn meanwhile: closed a switch later
                        self._older.append(self._night)
                        while len(self._older) > 1:
                            self._older.pop(0).con.close()
                    self._night = _open(path)
                self._seen = seen
        return self._night


def _open(path: Path) -> Night:
    con = duckdb.connect(str(path), read_only=True)
    # Sessions bring the concurrency; each page's queries are small: one thread apiece.
    con.execute("SET threads = 1")
    as_of, night_dir, figures, months = con.execute(
        "SELECT as_of_date, night_dir, figures, history_months FROM meta"
    ).fetchall()[0]
    night = Night(path, con, as_of, night_dir, json.loads(figures), history_months=months)
    night.choices = {
        "queue": list(QUEUES),
        "tier": list(TIERS),
        "reason": list(SIGNALS),
        "care": list(CARE_FLAGS),
        "letter": list(LETTER_STATUSES),
        "state": _distinct(con, "property_state"),
        "language": _distinct(con, "language"),
    }
    return night


def _distinct(con: duckdb.DuckDBPyConnection, column: str) -> list[str]:
    return [
        r[0]
        for r in con.execute(
            f"SELECT DISTINCT {column} FROM queue WHERE {column} IS NOT NULL ORDER BY 1"
        ).fetchall()
    ]


def _dicts(cur: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


@dataclass(frozen=True)
class QueueQuery:
    """The queue page's filters, search, sort and page, as the URL carries them."""

    queue: str = ""
    tier: str = ""
    reason: str = ""
    care: str = ""
    state: str = ""
    language: str = ""
    letter: str = ""
    q: str = ""
    sort: str = "rank"
    desc: bool = False
    page: int = 1

    @classmethod
    def of(cls, params: dict[str, str], choices: dict[str, list[str]]) -> QueueQuery:
        """The query from the URL's parameters; a value not among the choices is ignored."""
        kept = {
            name: params[name]
            for name in ("queue", "tier", "reason", "care", "state", "language", "letter")
            if params.get(name) in choices.get(name, ())
        }
        try:
            page = max(int(params.get("page", "1")), 1)
        except ValueError:
            page = 1
        return cls(
            **kept,
            q=params.get("q", "").strip()[:100],
            sort=params.get("sort", "rank") if params.get("sort") in SORTS else "rank",
            desc=params.get("dir") == "desc",
            page=page,
        )

    def where(self) -> tuple[str, dict[str, Any]]:
        terms, params = ["true"], {}
        for name, column in (
            ("queue", "queue"),
            ("tier", "tier"),
            ("state", "property_state"),
            ("language", "language"),
            ("letter", "letter_status"),
        ):
            if getattr(self, name):
                terms.append(f"{column} = ${name}")
                params[name] = getattr(self, name)
        for name, column in (("reason", "reasons"), ("care", "care")):
            if getattr(self, name):
                terms.append(f"list_contains({column}, ${name})")
                params[name] = getattr(self, name)
        if self.q:
            terms.append("(loan_id ILIKE $q OR borrower_name ILIKE $q)")
            params["q"] = "%" + self.q.replace("\\", "").replace("%", "").replace("_", "\\_") + "%"
        return " AND ".join(terms), params

    def link(self, **changes: Any) -> str:
        """The query string of this query with ``changes`` (the page's links)."""
        values = {**self.__dict__, **changes}
        pairs = [
            (k, str(v))
            for k, v in values.items()
            if k not in ("desc", "page", "sort") and v not in ("", None)
        ]
        if values["sort"] != "rank":
            pairs.append(("sort", values["sort"]))
        if values["desc"]:
            pairs.append(("dir", "desc"))
        if values["page"] != 1:
            pairs.append(("page", str(values["page"])))
        return "?" + urlencode(pairs)


def queue_page(night: Night, query: QueueQuery, rows: int) -> tuple[list[dict[str, Any]], int]:
    """One page of the queue as filtered and sorted, and how many loans match."""
    where, params = query.where()
    order = f"{SORTS[query.sort]} {'DESC' if query.desc else 'ASC'} NULLS LAST, queue_rank"
    cur = night.cursor()
    try:
        total = cur.execute(f"SELECT count(*) FROM queue WHERE {where}", params).fetchall()[0][0]
        cur.execute(
            f"""SELECT {QUEUE_COLUMNS} FROM queue WHERE {where} ORDER BY {order}
            LIMIT {int(rows)} OFFSET {int((query.page - 1) * rows)}""",
            params,
        )
        return _dicts(cur), total
    finally:
        cur.close()


def queue_rows(night: Night, loan_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The queue rows of ``loan_ids`` (those flagged on the night)."""
    if not loan_ids:
        return {}
    cur = night.cursor()
    try:
        cur.execute(
            f"""SELECT {QUEUE_COLUMNS} FROM queue WHERE loan_id IN (SELECT unnest($l::VARCHAR[]))
            ORDER BY queue_rank""",
            {"l": loan_ids},
        )
        return {r["loan_id"]: r for r in _dicts(cur)}
    finally:
        cur.close()


CALLS_SHOWN = 100  # calls on one page of the call list


def call_list(night: Night, done: set[str], page: int) -> tuple[list[dict[str, Any]], int]:
    """One page of the night's call list, less the loans in ``done`` (a contact attempt
    recorded since), and how many calls are left."""
    where = "loan_id NOT IN (SELECT unnest($done::VARCHAR[]))"
    params = {"done": sorted(done)}
    cur = night.cursor()
    try:
        left = cur.execute(f"SELECT count(*) FROM call_list WHERE {where}", params).fetchall()
        cur.execute(
            f"""SELECT call_status, live_contact_due_date, queue_rank, loan_id, borrower_name,
               phone, language, tier, days_past_due, amount_past_due, last_contact_date
            FROM call_list WHERE {where}
            LIMIT {CALLS_SHOWN} OFFSET {(max(page, 1) - 1) * CALLS_SHOWN}""",
            params,
        )
        return _dicts(cur), left[0][0]
    finally:
        cur.close()


def letter_pdf(night: Night, loan_id: str, letter_id: str) -> Path | None:
    """The PDF of one of the loan's letters, if the night wrote one under its output
    folder (a path outside it, or a file that is gone, is none)."""
    cur = night.cursor()
    try:
        found = cur.execute(
            "SELECT pdf_path FROM letters WHERE loan_id = $l AND letter_id = $id AND pdf_path IS NOT NULL",
            {"l": loan_id, "id": letter_id},
        ).fetchall()
    finally:
        cur.close()
    if not found:
        return None
    path = Path(found[0][0]).resolve()
    out = Path(night.night_dir).resolve().parent
    if path.suffix != ".pdf" or not path.is_relative_to(out) or not path.is_file():
        return None
    return path


def known_loan(night: Night, loan_id: str) -> bool:
    cur = night.cursor()
    try:
        return bool(
            cur.execute("SELECT count(*) FROM loans WHERE loan_id = $l", {"l": loan_id}).fetchall()[
                0
            ][0]
        )
    finally:
        cur.close()


def account(night: Night, loan_id: str) -> dict[str, Any] | None:
    """All the static page's panel shows for a loan flagged on the night (None if not)."""
    cur = night.cursor()
    try:
        cur.execute("SELECT * FROM queue WHERE loan_id = $l", {"l": loan_id})
        found = _dicts(cur)
        if not found:
            return None
        params = {"l": loan_id}
        reads = {
            "options": """SELECT option_code, eligible, rank, rationale, terms, plan_months,
                plan_payment, plan_last_payment, amount FROM hardship_options WHERE loan_id = $l
                ORDER BY eligible DESC, rank, option_code""",
            "all_letters": """SELECT letter_id, as_of_date, template, status, suppression_reason,
                pdf_path IS NOT NULL AS has_pdf FROM letters WHERE loan_id = $l ORDER BY as_of_date DESC, letter_id""",
            "events": """SELECT case_id, as_of_date, event, note FROM review_case_events
                WHERE loan_id = $l ORDER BY as_of_date DESC""",
            "promises": """SELECT decision_id, status, paid_toward FROM review_promises
                WHERE loan_id = $l""",
            "decisions": """SELECT * FROM review_decisions WHERE loan_id = $l""",
            "paid": """SELECT due, paid, days_past_due FROM payment_history WHERE loan_id = $l""",
        }
        detail: dict[str, Any] = {"loan": found[0]}
        for name, query in reads.items():
            cur.execute(query, params)
            detail[name] = _dicts(cur)
        detail["letters"] = detail["all_letters"][:LETTERS_SHOWN]
        found_history = detail.pop("paid")
        due, paid, dpd = (
            (found_history[0][k] for k in ("due", "paid", "days_past_due"))
            if found_history
            else ([], [], [])
        )
        detail["history"] = [
            {"month": m, "due": d, "paid": p, "days_past_due": x}
            for m, d, p, x in zip(night.history_months, due, paid, dpd, strict=False)
        ]
        return detail
    finally:
        cur.close()
