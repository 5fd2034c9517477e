"""The letters step: tonight's letter decisions, the letters rendered, their rows and the
mail manifest. The flow runs it in three parts (decide, render, record) so that the
rendering can fan out over its task runner; :func:`run` does all three in one call."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from lienwatch import letters as render
from lienwatch import warehouse
from lienwatch.catalogue import load_catalogue
from lienwatch.night import Night
from lienwatch.review import decisions
from lienwatch.settings import Settings
from transforms.cases import apply_holds
from transforms.letters import HISTORY_COLUMNS, MAILING_FIELDS, Rules, decide, mailing_problems

LETTER_INPUTS = """
WITH offered AS (
    SELECT loan_id, bool_or(eligible AND offer AND option_code NOT IN ('housing_counseling', 'bankruptcy_referral'))
           AS has_option
    FROM hardship_options WHERE as_of_date = $as_of GROUP BY loan_id
),
changes AS (
    SELECT c.loan_id, arg_min(c.scheduled_payment, c.effective_due_date) AS next_change_amount,
           min(c.effective_due_date) AS next_change_date
    FROM payment_changes AS c
    WHERE c.effective_due_date > $as_of AND c.effective_due_date <= $as_of::DATE + 90
    GROUP BY c.loan_id
)
SELECT f.loan_id, f.borrower_id, f.tier, f.care, s.days_past_due, s.oldest_unpaid_due_date,
       s.next_due_date, s.amount_past_due, s.installment_amount, l.product, l.occupancy,
       l.property_state, coalesce(l.acquired_in_default, false) AS acquired_in_default,
       b.first_name, b.last_name, b.address_line1, b.address_line2, b.city, b.state, b.zip,
       b.preferred_language, b.bankruptcy_filed_date,
       coalesce(o.has_option, false) AS has_option,
       CASE WHEN ch.next_change_amount > s.installment_amount THEN ch.next_change_amount END AS next_change_amount,
       CASE WHEN ch.next_change_amount > s.installment_amount THEN ch.next_change_date END AS next_change_date
FROM risk_flags AS f
JOIN loan_status AS s ON s.as_of_date = f.as_of_date AND s.loan_id = f.loan_id
JOIN loans AS l ON l.loan_id = f.loan_id
LEFT JOIN borrowers AS b ON b.borrower_id = f.borrower_id
LEFT JOIN offered AS o ON o.loan_id = f.loan_id
LEFT JOIN changes AS ch ON ch.loan_id = f.loan_id
WHERE f.as_of_date = $as_of
ORDER BY f.loan_id
"""


DRY_RUN = "dry run: letters.render is false, nothing was rendered or mailed"


def letter_rules(settings: Settings) -> Rules:
    c = settings.letters
    return Rules(
        notice_from_day=c.notice_from_day,
        notice_every_days=c.notice_every_days,
        heloc_counseling_from_day=c.heloc_counseling_from_day,
        heloc_counseling_every_days=c.heloc_counseling_every_days,
        imminent_default_every_days=c.imminent_default_every_days,
        early_warning_every_days=c.early_warning_every_days,
        min_gap_days=c.min_gap_days,
    )


# Every letter generated before tonight, and those the letter_history feed says were sent
# before lienwatch (their borrower from the loans where the feed leaves it out).
LETTER_HISTORY = f"""
SELECT {", ".join(HISTORY_COLUMNS)} FROM letters WHERE status = 'generated' AND as_of_date < $as_of
UNION ALL
SELECT 'sent before lienwatch (' || h.template || ')', h.sent_date, h.loan_id,
       coalesce(h.borrower_id, l.borrower_id), h.template
FROM letter_history AS h LEFT JOIN loans AS l USING (loan_id)
WHERE h.sent_date < $as_of AND coalesce(h.borrower_id, l.borrower_id) IS NOT NULL"""


def history_known(con: duckdb.DuckDBPyConnection, night: Night) -> bool:
    """Whether the letters sent before tonight are known: a night before tonight completed
    (its letters are in ``letters``), or the letter_history feed was loaded."""
    found = con.execute(
        """SELECT EXISTS (SELECT 1 FROM runs WHERE status = 'completed' AND as_of_date < $as_of)
               OR EXISTS (SELECT 1 FROM ingested_files WHERE feed = 'letter_history')""",
        {"as_of": night.as_of},
    ).fetchall()
    return bool(found[0][0])


def prepare(night: Night, settings: Settings) -> dict[str, Any]:
    """Tonight's letter decisions, and the data of each letter to render (plain, picklable)."""
    catalogue = load_catalogue(settings.options.catalogue)
    con = warehouse.connect(night.db)
    try:
        params = {"as_of": night.as_of}
        candidates = con.sql(LETTER_INPUTS, params=params).pl()
        candidates = candidates.with_columns(mailing_problems(candidates))
        history = con.sql(LETTER_HISTORY, params=params).pl()
        rules = dataclasses.replace(letter_rules(settings), history_known=history_known(con, night))
        decided = apply_holds(
            decide(candidates, history, night.as_of, rules),
            decisions.holds_as_of(con, night.as_of),
        )
        if not settings.letters.render:
            decided = decided.with_columns(
                pl.when(pl.col("status") == "generated")
                .then(pl.lit(DRY_RUN))
                .otherwise(pl.col("suppression_reason"))
                .alias("suppression_reason"),
                pl.lit("suppressed").alias("status"),
            )
        # In template and language order: consecutive letters share most of their paragraphs, which
        # the Typst compiler has laid out already (it keeps what the last ten letters used).
        wanted = (
            decided.filter(pl.col("status") == "generated")
            .join(candidates, on=["loan_id", "borrower_id"])
            .sort("template", "language", "letter_id")
        )
        options = con.sql(
            """SELECT * FROM hardship_options WHERE as_of_date = $as_of AND eligible
                          AND loan_id IN (SELECT unnest($loans::VARCHAR[]))""",
            params={**params, "loans": wanted["loan_id"].to_list()},
        ).pl()
    finally:
        con.close()

    servicer = {language: render.servicer_block(settings, language) for language in ("en", "es")}
    by_loan: dict[str, list[dict]] = {}
    for row in options.iter_rows(named=True):
        by_loan.setdefault(row["loan_id"], []).append(row)
    payloads = [
        render.letter_payload(
            row,
            render.examples_for(
                row["template"],
                render.option_entries(
                    by_loan.get(row["loan_id"], []),
                    catalogue,
                    row["language"],
                    row["property_state"],
                    settings.letters.max_options,
                    render.days_behind_at_next_due(row),
                ),
                catalogue,
                row["language"],
                settings.letters.max_options,
            ),
            servicer[row["language"]],
            night.as_of,
            collector_for_every_loan=settings.servicer.debt_collector,
        )
        for row in wanted.iter_rows(named=True)
    ]
    addresses = candidates.select("loan_id", *MAILING_FIELDS)
    return {
        "decided": decided,
        "history_known": rules.history_known,
        "addresses": addresses,
        "payloads": payloads,
        "folder": str(night.night_dir / "letters"),
    }


def finish(
    night: Night, prepared: dict[str, Any], rendered: list[dict[str, Any]]
) -> dict[str, Any]:
    """Write the night's letters rows and the mail manifest from the rendering results."""
    folder = Path(prepared["folder"])
    results = render.results_frame(rendered)
    _remove_stale(
        folder, set(results.filter(pl.col("pdf_path").is_not_null())["letter_id"].to_list())
    )
    final = (
        prepared["decided"]
        .join(results, on="letter_id", how="left")
        .with_columns(
            pl.when(pl.col("problems").list.len() > 0)
            .then(pl.format("compliance checklist failed: {}", pl.col("problems").list.join("; ")))
            .otherwise(pl.col("suppression_reason"))
            .alias("suppression_reason"),
        )
        .with_columns(
            pl.when(pl.col("suppression_reason").is_null())
            .then(pl.lit("generated"))
            .otherwise(pl.lit("suppressed"))
            .alias("status"),
            pl.col("pages").cast(pl.Int32),
        )
        .select(
            "letter_id",
            "as_of_date",
            "loan_id",
            "borrower_id",
            "template",
            "language",
            "status",
            "suppression_reason",
            "pdf_path",
            "html_path",
            "pages",
            "problems",
        )
    )
    manifest = (
        final.filter(pl.col("status") == "generated")
        .join(prepared["addresses"], on="loan_id")
        .select(
            "letter_id",
            pl.concat_str("first_name", "last_name", separator=" ", ignore_nulls=True).alias(
                "name"
            ),
            *render.MANIFEST_COLUMNS[2:-1],  # the address to "pages", as the manifest has them
            # relative to the manifest, so the night's folder can be handed over as it is
            pl.format("letters/{}.pdf", pl.col("letter_id")).alias("file"),
        )
        .sort("letter_id")
    )
    night.night_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    render.write_manifest(night.night_dir / "mail_manifest.csv", manifest.to_dicts())

    con = warehouse.connect(night.db)
    try:
        with warehouse.transaction(con):
            warehouse.replace_night(con, "letters", final.drop("problems"), night.as_of)
    finally:
        con.close()
    generated = (
        final.filter(pl.col("status") == "generated").group_by("template").len().sort("template")
    )
    reasons = (
        final.filter(pl.col("status") == "suppressed")
        .with_columns(pl.col("suppression_reason").str.extract(r"^([^:;]+)").alias("why"))
        .group_by("why")
        .len()
        .sort("why")
    )
    return {
        "generated": int((final["status"] == "generated").sum()),
        "suppressed": int((final["status"] == "suppressed").sum()),
        "checklist_failed": int((final["problems"].list.len() > 0).sum()),
        "pages": int(final["pages"].sum() or 0),
        "by_template": dict(
            zip(generated["template"].to_list(), generated["len"].to_list(), strict=True)
        ),
        "suppressed_by_reason": dict(
            zip(reasons["why"].to_list(), reasons["len"].to_list(), strict=True)
        ),
        "manifest": str(night.night_dir / "mail_manifest.csv"),
        # the first night without the letter_history feed holds the courtesy letters
        "letter_history_known": bool(prepared.get("history_known", True)),
    }


def run(night: Night, settings: Settings) -> dict[str, Any]:
    """Tonight's letters in one call: decided, rendered over local processes, recorded."""
    prepared = prepare(night, settings)
    rendered = render.render_all(
        prepared["payloads"], Path(prepared["folder"]), settings.letters.render_workers or None
    )
    return finish(night, prepared, rendered)


def _remove_stale(folder: Path, keep: set[str]) -> None:
    """A rerun of the night leaves only tonight's letters in its folder."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path.suffix in (".pdf", ".html", ".part") and path.stem.lstrip(".") not in keep:
            path.unlink()
