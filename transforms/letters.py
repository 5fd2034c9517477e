"""Outreach letters: which letter each flagged borrower gets tonight, and the checks on its text.

- :func:`decide`: one row per letter decided on (the ``letters`` table without paths):
  the template the rules call for, generated or suppressed with the reason.
- :func:`blocks`: a rendered letter text (the small block format of the
  ``templates/letters`` files) as a list of blocks for the HTML and PDF layouts.
- :func:`mailing_problem`: why a name and address must not be mailed, or None.
- :func:`check`: the compliance checklist (data) against a letter's plain text.

The rules (settings ``[letters]``; ``docs/letters.md``; ``docs/regulation.md``: "Early
intervention", "The HUD counseling notice", "Debt collection"):

- Regulation X early-intervention notice: closed-end second liens on a principal
  residence from ``notice_from_day`` days past due (so it is out by day 45), at most
  once in ``notice_every_days`` (180); again once that has passed while still behind.
  Borrowers in bankruptcy get the informational form, borrowers who asked the
  servicer to stop communicating the modified form; each only where a
  loss-mitigation option is available, and neither when both apply. For a borrower in
  bankruptcy only the notices sent since the petition (``bankruptcy_filed_date``)
  count, so the case's notice is out by day 45 after the petition whatever was sent
  before it.
- HELOCs (outside Regulation X) get the HUD counseling notice from
  ``heloc_counseling_from_day`` days past due, once per delinquency.
- 60-89 days past due: the imminent-default letter; early-warning tier: the courtesy
  letter; each at most once in its own cadence. An open loss-mitigation case replaces
  both.
- Nothing to deceased borrowers (routed to review), or anything but the required notice
  to cease-communication borrowers; bankruptcy borrowers get only the informational
  notice. A letter whose name or address would not print as it should
  (:func:`mailing_problem`) is held for the review team.
- The required notices (:data:`REQUIRED`) are never held back by the courtesy rules.
  A courtesy letter yields to them: none within ``min_gap_days`` of a borrower's last
  letter, none on a night a required notice goes to the borrower, and at most one a
  night.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from typing import Any

import polars as pl

NOTICE_FAMILY = ("early_intervention", "early_intervention_bankruptcy", "early_intervention_cease")
PRIORITY = (*NOTICE_FAMILY, "heloc_counseling", "imminent_default", "early_warning")
# Notices the law requires by a deadline (day 45 of the delinquency, or of the bankruptcy
# petition): the courtesy rules (the minimum gap, one letter a night) never delay them.
REQUIRED = (*NOTICE_FAMILY, "heloc_counseling")

CANDIDATE_COLUMNS = {
    "loan_id": "risk_flags",
    "borrower_id": "risk_flags",
    "tier": "risk_flags",
    "care": "risk_flags: care flags",
    "days_past_due": "loan_status",
    "oldest_unpaid_due_date": "loan_status",
    "product": "loans",
    "occupancy": "loans",
    "preferred_language": "borrowers",
    "bankruptcy_filed_date": "borrowers: the bankruptcy petition's date, where known",
    "mailing_problem": "what stops the name and address being mailed (:func:`mailing_problem`), or null",
    "has_option": "an eligible loss-mitigation option to offer (counseling and referrals aside)",
}
HISTORY_COLUMNS = ("letter_id", "as_of_date", "loan_id", "borrower_id", "template")

LETTER_SCHEMA = {
    "letter_id": pl.String,
    "as_of_date": pl.Date,
    "loan_id": pl.String,
    "borrower_id": pl.String,
    "template": pl.String,
    "language": pl.String,
    "status": pl.String,
    "suppression_reason": pl.String,
}


@dataclass(frozen=True)
class Rules:
    """The cadence of each letter (from settings)."""

    notice_from_day: int = 30
    notice_every_days: int = 180
    heloc_counseling_from_day: int = 30
    heloc_counseling_every_days: int = 28
    imminent_default_every_days: int = 60
    early_warning_every_days: int = 90
    min_gap_days: int = 14
    # What was sent before is known: a night ran before, or the letter_history feed was
    # loaded. Without it (the first night, no feed) the courtesy letters are held.
    history_known: bool = True


GO_LIVE_HOLD = (
    "first night without a letter history: letters sent before lienwatch are unknown "
    "(load letter_history.csv), so only the required notices go; held for review"
)


def letter_id(as_of: date, borrower_id: str, loan_id: str, template: str) -> str:
    """Stable across reruns: the same night, borrower, loan and template give the same id."""
    digest = hashlib.sha256(
        f"{as_of.isoformat()}|{borrower_id}|{loan_id}|{template}".encode()
    ).hexdigest()
    return f"L{as_of:%Y%m%d}-{digest[:12]}"


LETTER_ID_NIGHT = re.compile(r"L(\d{4})(\d{2})(\d{2})-")


def night_of(letter_id: str) -> date | None:
    """The night a :func:`letter_id` was made on (its ``L20240603-`` prefix); None for an id
    of another form."""
    found = LETTER_ID_NIGHT.match(letter_id)
    try:
        return date(*map(int, found.groups())) if found else None
    except ValueError:
        return None


def letter_ids(frame: pl.DataFrame, as_of: date) -> pl.Series:
    """:func:`letter_id` of every row of ``frame`` (borrower_id, loan_id, template)."""
    night, prefix = as_of.isoformat(), f"L{as_of:%Y%m%d}-"
    keys = frame.select("borrower_id", "loan_id", "template").iter_rows()
    return pl.Series(
        "letter_id",
        [
            prefix
            + hashlib.sha256(f"{night}|{borrower}|{loan}|{template}".encode()).hexdigest()[:12]
            for borrower, loan, template in keys
        ],
        dtype=pl.String,
    )


def _care(flag: str) -> pl.Expr:
    return pl.col("care").list.contains(flag).fill_null(False)


def _last_sent(history: pl.DataFrame, templates: tuple[str, ...], alias: str) -> pl.DataFrame:
    return (
        history.filter(pl.col("template").is_in(list(templates)))
        .group_by("loan_id")
        .agg(pl.col("as_of_date").max().alias(alias))
    )


def decide(
    candidates: pl.DataFrame, history: pl.DataFrame, as_of: date, rules: Rules
) -> pl.DataFrame:
    """One row per letter decided on tonight (columns :data:`LETTER_SCHEMA`).

    ``candidates`` has :data:`CANDIDATE_COLUMNS` (one row per flagged loan);
    ``history`` is every letter generated before tonight (:data:`HISTORY_COLUMNS`).
    """
    history = history.filter(pl.col("as_of_date") < as_of)
    dpd = pl.col("days_past_due")

    def since(col: str) -> pl.Expr:
        return (pl.lit(as_of) - pl.col(col)).dt.total_days()

    frame = (
        candidates.join(_last_sent(history, NOTICE_FAMILY, "_notice"), on="loan_id", how="left")
        .join(_last_sent(history, ("heloc_counseling",), "_counseling"), on="loan_id", how="left")
        .join(_last_sent(history, ("imminent_default",), "_imminent"), on="loan_id", how="left")
        .join(_last_sent(history, ("early_warning",), "_courtesy"), on="loan_id", how="left")
    )
    bankrupt, cease = _care("bankruptcy"), _care("cease_communication")
    # In bankruptcy the notice's clock is the petition's (§1024.39(c)(1)(iii)): a notice sent
    # before the petition does not hold back the case's own, due by the petition's day 45.
    before_petition = bankrupt & (pl.col("_notice") < pl.col("bankruptcy_filed_date"))
    frame = frame.with_columns(
        pl.when(before_petition.fill_null(False))
        .then(pl.lit(None, dtype=pl.Date))
        .otherwise(pl.col("_notice"))
        .alias("_notice")
    )
    reg_x = (pl.col("product") == "closed_end") & (pl.col("occupancy") == "primary")
    notice = (
        pl.when(cease)
        .then(pl.lit("early_intervention_cease"))
        .when(bankrupt)
        .then(pl.lit("early_intervention_bankruptcy"))
        .otherwise(pl.lit("early_intervention"))
    )

    def due(last: str, every: int) -> pl.Expr:
        return pl.col(last).is_null() | (since(last) >= every)

    # (wanted, template, due tonight), in order of priority
    wanted = [
        (reg_x & (dpd >= rules.notice_from_day), notice, due("_notice", rules.notice_every_days)),
        (
            (pl.col("product") == "heloc")
            & (pl.col("occupancy") == "primary")
            & (dpd >= rules.heloc_counseling_from_day),
            pl.lit("heloc_counseling"),
            due("_counseling", rules.heloc_counseling_every_days)
            & (
                pl.col("_counseling").is_null()
                | (pl.col("_counseling") < pl.col("oldest_unpaid_due_date"))
            ),
        ),
        (
            pl.col("tier") == "imminent_default",
            pl.lit("imminent_default"),
            due("_imminent", rules.imminent_default_every_days),
        ),
        (
            pl.col("tier") == "early_warning",
            pl.lit("early_warning"),
            due("_courtesy", rules.early_warning_every_days),
        ),
    ]
    # The first letter that is both wanted and due tonight. A letter that is not due yet
    # (its cadence) is not a decision: no row, so the table holds what was sent or held back.
    chosen = pl.lit(None, dtype=pl.String)
    for want, template, is_due in reversed(wanted):
        chosen = pl.when(want.fill_null(False) & is_due).then(template).otherwise(chosen)
    frame = frame.with_columns(chosen.alias("template")).filter(pl.col("template").is_not_null())

    t = pl.col("template")
    courtesy = t.is_in(["imminent_default", "early_warning"])
    in_family = t.is_in(list(NOTICE_FAMILY))
    reason = (
        pl.when(_care("deceased"))
        .then(pl.lit("borrower deceased: routed to review"))
        .when(bankrupt & cease & in_family)
        .then(
            pl.lit(
                "bankruptcy and a cease-communication notice: no early intervention notice is required"
            )
        )
        .when(cease & (t != "early_intervention_cease"))
        .then(pl.lit("cease communication: only the required early intervention notice is sent"))
        .when(bankrupt & ~in_family)
        .then(
            pl.lit(
                "bankruptcy: only the informational early intervention notice is sent; routed to review"
            )
        )
        .when(in_family & (t != "early_intervention") & ~pl.col("has_option"))
        .then(
            pl.lit("no loss-mitigation option available: this form of the notice is not required")
        )
        .when(courtesy & _care("open_loss_mitigation"))
        .then(
            pl.lit(
                "open loss-mitigation case: courtesy letters are replaced by the case's own contact"
            )
        )
        .when(pl.col("mailing_problem").is_not_null())
        .then(pl.format("{}: {}", pl.lit(MAILING_HOLD), pl.col("mailing_problem")))
    )
    frame = frame.with_columns(
        reason.alias("suppression_reason"),
        pl.when(pl.col("preferred_language").is_in(["en", "es"]))
        .then(pl.col("preferred_language"))
        .otherwise(pl.lit("en"))
        .alias("language"),
        pl.lit(as_of).alias("as_of_date"),
    )
    if not rules.history_known:
        frame = frame.with_columns(
            pl.when(pl.col("suppression_reason").is_null() & ~t.is_in(list(REQUIRED)))
            .then(pl.lit(GO_LIVE_HOLD))
            .otherwise(pl.col("suppression_reason"))
            .alias("suppression_reason")
        )
    frame = _gap_and_one_a_night(frame, history, as_of, rules)
    return (
        frame.with_columns(
            letter_ids(frame, as_of),
            pl.when(pl.col("suppression_reason").is_null())
            .then(pl.lit("generated"))
            .otherwise(pl.lit("suppressed"))
            .alias("status"),
        )
        .sort("borrower_id", "loan_id")
        .select(list(LETTER_SCHEMA))
    )


def _gap_and_one_a_night(
    frame: pl.DataFrame, history: pl.DataFrame, as_of: date, rules: Rules
) -> pl.DataFrame:
    """The courtesy rules, for courtesy letters only: none within the minimum gap after a
    borrower's last letter, none on a night a required notice goes to the borrower, and at
    most one a night. A required notice is never held back by them: its deadline is the
    law's, and two required notices on one night both go."""
    recent = (
        history.filter((pl.lit(as_of) - pl.col("as_of_date")).dt.total_days() < rules.min_gap_days)
        .sort("as_of_date")
        .group_by("borrower_id")
        .agg(
            pl.col("letter_id").last().alias("_recent_id"),
            pl.col("as_of_date").last().alias("_recent_date"),
        )
    )
    order = {t: i for i, t in enumerate(PRIORITY)}
    courtesy = ~pl.col("template").is_in(list(REQUIRED))
    frame = (
        frame.join(recent, on="borrower_id", how="left")
        .with_columns(
            pl.when(
                pl.col("suppression_reason").is_null()
                & courtesy
                & pl.col("_recent_id").is_not_null()
            )
            .then(
                pl.format(
                    "minimum gap: letter {} sent on {}; at most one letter in {} days",
                    pl.col("_recent_id"),
                    pl.col("_recent_date"),
                    pl.lit(rules.min_gap_days),
                )
            )
            .otherwise(pl.col("suppression_reason"))
            .alias("suppression_reason"),
            pl.col("template").replace_strict(order, return_dtype=pl.Int32).alias("_priority"),
        )
        # the borrower's letters going tonight first, required notices before courtesy letters
        .sort(
            "borrower_id",
            pl.col("suppression_reason").is_not_null(),
            "_priority",
            pl.col("days_past_due"),
            "loan_id",
            descending=[False, False, False, True, False],
        )
    )
    first = pl.int_range(pl.len()).over("borrower_id") == 0
    keeper = pl.col("loan_id").first().over("borrower_id")
    keeper_required = pl.col("template").first().over("borrower_id").is_in(list(REQUIRED))
    return frame.with_columns(
        pl.when(pl.col("suppression_reason").is_null() & courtesy & ~first)
        .then(
            pl.when(keeper_required)
            .then(
                pl.format(
                    "one letter per borrower a night: the required notice for loan {} goes first",
                    keeper,
                )
            )
            .otherwise(
                pl.format(
                    "one letter per borrower a night: the letter for loan {} goes instead", keeper
                )
            )
        )
        .otherwise(pl.col("suppression_reason"))
        .alias("suppression_reason")
    )


# --------------------------------------------------------------------------- names and addresses

MAILING_HOLD = "held for review"  # the suppression reason of a letter whose address is held
MAILING_FIELDS = (
    "first_name",
    "last_name",
    "address_line1",
    "address_line2",
    "city",
    "state",
    "zip",
)
# The 50 states, DC, the territories and the military "states" the USPS delivers to.
# fmt: off
US_STATES = frozenset((
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA",
    "KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ",
    "NM", "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT",
    "VA", "WA", "WV", "WI", "WY", "DC", "PR", "GU", "VI", "AS", "MP", "AA", "AE", "AP",
))
# fmt: on
ZIP = re.compile(r"\d{5}(-\d{4})?")
# Text that is never part of a name or an address: whatever a feed holds is printed as it
# is, so these show a broken export or an attack, and a person looks before it is mailed.
SUSPECT = (
    (re.compile(r"[<>]"), "markup (< or >)"),
    (re.compile(r"\\"), "a backslash"),
    (
        re.compile(
            r";|--|/\*|\*/|\b(drop|delete|insert|alter|truncate)\s+(table|from|into|database)\b"
            r"|\bunion\s+(all\s+)?select\b",
            re.IGNORECASE,
        ),
        "SQL-like text",
    ),
    (
        re.compile(r"\{[{%#]|[}%#]\}|#(set|show|let|import|include|eval|read|page|text)\b"),
        "template syntax",
    ),
    (re.compile(r"[{}$*_@`]"), "typesetting markup ({ } $ * _ @ `)"),
)


def _text_problem(value: str) -> str | None:
    if any(unicodedata.category(ch).startswith("C") for ch in value):
        return "a control character"
    return next((what for pattern, what in SUSPECT if pattern.search(value)), None)


def _form_problem(field: str, value: str) -> str | None:
    """A required part of the address missing, or not of its form (a street or city with no
    letter, a state that is not a US one, a ZIP not 5 or 5+4 digits)."""
    if field in ("address_line1", "city", "state", "zip") and not value:
        return "missing"
    if field in ("address_line1", "city") and not any(ch.isalpha() for ch in value):
        return "malformed: no letters"
    if field == "state" and value not in US_STATES:
        return f"malformed: {value!r} is not a 2-letter US state"
    if field == "zip" and not ZIP.fullmatch(value):
        return f"malformed: {value!r} is not 5 or 5+4 digits"
    return None


def mailing_problem(row: dict[str, Any]) -> str | None:
    """Why a letter to this name and address must not be mailed tonight ("<field>: <the
    problem>", the first found, in :data:`MAILING_FIELDS` order), or None. Apostrophes,
    hyphens and accents are ordinary (O'Neil, Mary-Jo, Núñez) and print as they are."""
    if not (row.get("first_name") or "").strip() and not (row.get("last_name") or "").strip():
        return "name: missing"
    for field in MAILING_FIELDS:
        value = (row.get(field) or "").strip()
        problem = _text_problem(row.get(field) or "") or _form_problem(field, value)
        if problem:
            return f"{field}: {problem}"
    return None


def mailing_problems(frame: pl.DataFrame) -> pl.Series:
    """:func:`mailing_problem` of every row of ``frame`` (its :data:`MAILING_FIELDS`).

    Nearly every name and address is plain: printable ASCII and Latin letters (never a
    control character), no suspect text, each part of its form. Those are told apart for
    the whole frame at once (:func:`_plainly_mailable`); only the others go through
    :func:`mailing_problem`.
    """
    fields = frame.select(MAILING_FIELDS)
    plain = fields.select(_plainly_mailable()).to_series()
    problems: list[str | None] = [None] * fields.height
    for index in (~plain).arg_true().to_list():
        problems[index] = mailing_problem(fields.row(index, named=True))
    return pl.Series("mailing_problem", problems, dtype=pl.String)


# Printable ASCII and the Latin-1 and Latin Extended-A letters: characters on which Python's
# and polars' regular expressions agree (word characters, spaces, case folding: the dotless
# and dotted i and the long s, which fold across scripts, are left out), none of them a
# control character or a space other than " ".
_PLAIN_TEXT = r"^[\x20-\x7e\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u012f\u0132-\u017e]*$"


def _plainly_mailable() -> pl.Expr:
    """True where every field is plain text (:data:`_PLAIN_TEXT`) and :func:`mailing_problem`
    finds nothing: a row it leaves False may still be mailable (and is looked at alone)."""
    checks = [
        (pl.col("first_name").fill_null("").str.strip_chars() != "")
        | (pl.col("last_name").fill_null("").str.strip_chars() != "")
    ]
    for field in MAILING_FIELDS:
        raw = pl.col(field).fill_null("")
        value = raw.str.strip_chars()
        checks.append(raw.str.contains(_PLAIN_TEXT))
        checks.extend(~raw.str.contains(_polars_pattern(pattern)) for pattern, _ in SUSPECT)
        if field in ("address_line1", "city", "state", "zip"):
            checks.append(value != "")
        if field in ("address_line1", "city"):
            checks.append(value.str.contains("[A-Za-z]"))
        if field == "state":
            checks.append(value.is_in(sorted(US_STATES)))
        if field == "zip":
            checks.append(value.str.contains(f"^(?:{ZIP.pattern})$"))
    return pl.all_horizontal(checks).alias("plain")


def _polars_pattern(pattern: re.Pattern[str]) -> str:
    return ("(?i)" if pattern.flags & re.IGNORECASE else "") + pattern.pattern


# --------------------------------------------------------------------------- letter text


def _item(rest: str) -> dict[str, Any]:
    lead, sep, text = rest.partition(" :: ")
    return {"lead": lead, "text": text, "notes": []} if sep else {"text": rest, "notes": []}


def blocks(text: str) -> list[dict[str, Any]]:
    """A rendered letter body as blocks: ``# heading``, ``! boxed``, ``~ small print``, a run
    of ``- item`` lines (``lead :: text``) as one ``list`` block; other lines are paragraphs
    (a blank line ends one, and a list). A ``~`` line right under an item is that item's
    note: it qualifies the option, so it is laid out with it, not after the whole list."""
    out: list[dict[str, Any]] = []
    paragraph: list[str] = []
    items: list[dict[str, Any]] | None = None  # the list being read, while it goes on

    def flush() -> None:
        if paragraph:
            out.append({"kind": "p", "text": " ".join(paragraph)})
            paragraph.clear()

    for raw in text.splitlines():
        line = raw.strip()
        marker, rest = line[:2], line[2:].strip()
        if marker == "~ " and items:
            items[-1]["notes"].append(rest)
            continue
        if marker == "- ":
            flush()
            if items is None:
                items = []
                out.append({"kind": "list", "items": items})
            items.append(_item(rest))
            continue
        items = None
        if not line:
            flush()
        elif marker in ("# ", "! ", "~ "):
            flush()
            out.append({"kind": {"# ": "h", "! ": "strong", "~ ": "small"}[marker], "text": rest})
        else:
            paragraph.append(line)
    flush()
    return out


def _fold(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFC", text)).casefold()


def _sections(checklist: dict[str, Any], template: str) -> list[dict[str, Any]]:
    """The checklist sections a template answers to: its own, ``[all]``, and every shared
    section (one with ``except_templates``) that does not leave it out."""
    shared = [
        spec
        for spec in checklist.values()
        if "except_templates" in spec and template not in spec["except_templates"]
    ]
    return [checklist[template], checklist.get("all", {}), *shared]


def check(
    text: str,
    template: str,
    language: str,
    checklist: dict[str, Any],
    values: dict[str, str],
    facts: dict[str, bool] | None = None,
) -> list[str]:
    """The checklist's failures for one letter: missing elements, forbidden phrases, and
    conditional elements (``when`` names one of ``facts``, what is true of this loan)
    missing where their condition holds or present where it does not."""
    if template not in checklist:
        return [f"no checklist for template {template}"]
    folded = _fold(text)
    problems = []
    for spec in _sections(checklist, template):
        for element in spec.get("required", []):
            phrases = [_fold(p.format(**values)) for p in element.get(language, []) if p]
            found = any(p in folded for p in phrases)
            applies = (facts or {}).get(element["when"], False) if "when" in element else True
            if applies and not found:
                problems.append(f"missing {element['id']}")
            elif found and not applies:
                problems.append(f"{element['id']} where it does not apply")
        problems += [
            f"forbidden phrase {phrase!r}"
            for phrase in spec.get("forbidden", [])
            if _fold(phrase) in folded
        ]
    return problems
