"""The outreach steps of a night: hardship options for each flagged loan.

Like the steps in ``lienwatch.night``, each opens the warehouse, reads, calls the pure
transforms, replaces the night's rows in one transaction and returns its counts.
"""

from __future__ import annotations

import tomllib
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from lienwatch import warehouse
from lienwatch.errors import LienwatchError
from lienwatch.settings import Settings
from transforms import options

BUNDLED_CATALOGUE = "hardship_options.toml"


def load_catalogue(path: Path | None) -> options.Catalogue:
    """The options catalogue at ``path`` (or the bundled one), validated."""
    if path is None:
        text = resources.files("lienwatch.catalogue").joinpath(BUNDLED_CATALOGUE).read_text(encoding="utf-8")
        source = f"lienwatch/catalogue/{BUNDLED_CATALOGUE}"
    else:
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise LienwatchError(f"{path}: hardship options catalogue not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise LienwatchError(f"{path}: cannot read the hardship options catalogue ({exc})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LienwatchError(f"{source}: not valid TOML ({exc})") from None
    try:
        return options.parse_catalogue(raw, source)
    except options.CatalogueError as exc:
        raise LienwatchError(str(exc)) from None


OPTION_INPUTS = """
SELECT f.loan_id, f.borrower_id, f.tier, f.reasons, f.care,
       s.days_past_due, s.installments_due - s.installments_paid AS installments_behind,
       s.amount_past_due, s.installment_amount,
       l.lien_position, l.product, l.occupancy, l.property_state, l.origination_date,
       l.first_payment_date, l.term_months, l.current_balance, l.property_value, l.senior_lien_balance
FROM risk_flags AS f
JOIN loan_status AS s ON s.as_of_date = f.as_of_date AND s.loan_id = f.loan_id
JOIN loans AS l ON l.loan_id = f.loan_id
WHERE f.as_of_date = $as_of
ORDER BY f.loan_id
"""


def options_as_of(con: duckdb.DuckDBPyConnection, catalogue: options.Catalogue, as_of: date) -> pl.DataFrame:
    """hardship_options rows for the loans flagged on ``as_of``."""
    inputs = con.sql(OPTION_INPUTS, params={"as_of": as_of}).pl()
    cases = con.sql("SELECT loan_id, case_type, opened_date, closed_date FROM loss_mit").pl()
    return options.evaluate(inputs, cases, catalogue, as_of)


def step_options(night, settings: Settings) -> dict[str, Any]:
    """hardship_options for the night's flagged loans, from the catalogue as it is tonight."""
    catalogue = load_catalogue(settings.options.catalogue)
    con = warehouse.connect(night.db)
    try:
        found = options_as_of(con, catalogue, night.as_of)
        with warehouse.transaction(con):
            warehouse.replace_rows(con, "hardship_options", found, "as_of_date = $as_of", {"as_of": night.as_of})
    finally:
        con.close()
    eligible = found.filter(pl.col("eligible"))
    best = eligible.filter(pl.col("rank") == 1).group_by("option_code").len().sort("option_code")
    return {
        "catalogue_version": catalogue.version,
        "loans": found["loan_id"].n_unique(),
        "options_considered": found.height,
        "eligible": eligible.height,
        "best_fit": dict(zip(best["option_code"].to_list(), best["len"].to_list(), strict=True)),
    }
