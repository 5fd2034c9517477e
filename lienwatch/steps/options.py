"""The options step: the hardship options each flagged loan may qualify for, from the
catalogue as it is tonight."""

from __future__ import annotations

from datetime import date
from typing import Any

import duckdb
import polars as pl

from lienwatch import warehouse
from lienwatch.catalogue import load_catalogue
from lienwatch.night import Night
from lienwatch.review import decisions
from lienwatch.settings import Settings
from transforms import options

OPTION_INPUTS = """
SELECT f.loan_id, f.borrower_id, f.tier, f.reasons, f.care,
       s.days_past_due, s.installments_due - s.installments_paid AS installments_behind,
       s.amount_past_due, s.installment_amount, s.next_due_date,
       l.lien_position, l.product, l.occupancy, l.property_state, l.origination_date,
       l.first_payment_date, l.term_months, l.current_balance, l.property_value, l.senior_lien_balance
FROM risk_flags AS f
JOIN loan_status AS s ON s.as_of_date = f.as_of_date AND s.loan_id = f.loan_id
JOIN loans AS l ON l.loan_id = f.loan_id
WHERE f.as_of_date = $as_of
ORDER BY f.loan_id
"""


def options_as_of(
    con: duckdb.DuckDBPyConnection, catalogue: options.Catalogue, as_of: date
) -> pl.DataFrame:
    """hardship_options rows for the loans flagged on ``as_of``."""
    inputs = con.sql(OPTION_INPUTS, params={"as_of": as_of}).pl()
    changes = warehouse.frame(
        con, "SELECT loan_id, effective_due_date, scheduled_payment FROM payment_changes"
    )
    return options.evaluate(
        inputs,
        decisions.loss_mit_cases(con, as_of),
        catalogue,
        as_of,
        payment_changes=changes,
    )


def run(night: Night, settings: Settings) -> dict[str, Any]:
    """hardship_options for the night's flagged loans, from the catalogue as it is tonight."""
    catalogue = load_catalogue(settings.options.catalogue)
    con = warehouse.connect(night.db)
    try:
        # In loan order (each loan's options in the catalogue's): the workbench's snapshot
        # copies the night's rows as they are, an account's rows side by side.
        found = options_as_of(con, catalogue, night.as_of).sort("loan_id", maintain_order=True)
        with warehouse.transaction(con):
            warehouse.replace_night(con, "hardship_options", found, night.as_of)
    finally:
        con.close()
    eligible = found.filter(pl.col("eligible"))
    best = eligible.filter(pl.col("rank") == 1).group_by("option_code").len().sort("option_code")
    return {
        "catalogue_version": catalogue.version,
        "loans": found.height // max(len(catalogue.option), 1),  # one row per loan per option
        "options_considered": found.height,
        "eligible": eligible.height,
        "best_fit": dict(zip(best["option_code"].to_list(), best["len"].to_list(), strict=True)),
    }
