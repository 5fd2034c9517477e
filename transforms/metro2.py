"""Metro 2 credit-reporting codes for a loan's days past due.

The table is the one in ``docs/regulation.md``, "Credit reporting (Metro 2 and FCRA)" (vendor guides, secondary sources):
Account Status (Field 17A) by days past due, and the Payment Rating (Field 17B) on the
same 0-6 scale that the 24-month Payment History Profile uses. Closed-account statuses
(13, 65, 88, 89, 94, 95), collection (93, ``G``) and charge-off (97, ``L``) are decided
by a servicer's reporting process, not by days past due, so they are not computed here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    from polars.expr.whenthen import ChainedThen, Then

# (lowest days past due, Account Status code, Payment Rating), in rising order.
STATUS_BY_DAYS: tuple[tuple[int, str, str], ...] = (
    (0, "11", "0"),
    (30, "71", "1"),
    (60, "78", "2"),
    (90, "80", "3"),
    (120, "82", "4"),
    (150, "83", "5"),
    (180, "84", "6"),
)
ACCOUNT_STATUSES = tuple(code for _, code, _ in STATUS_BY_DAYS)
PAYMENT_RATINGS = tuple(rating for _, _, rating in STATUS_BY_DAYS)


def _by_days(days_past_due: pl.Expr, values: tuple[str, ...]) -> pl.Expr:
    """The value of the highest band whose lower bound ``days_past_due`` reaches."""
    bands = list(zip((lower for lower, _, _ in STATUS_BY_DAYS), values, strict=True))
    expr: Then | ChainedThen = pl.when(days_past_due >= bands[-1][0]).then(pl.lit(bands[-1][1]))
    for lower, value in reversed(bands[1:-1]):
        expr = expr.when(days_past_due >= lower).then(pl.lit(value))
    return expr.otherwise(pl.lit(bands[0][1]))


def account_status(days_past_due: pl.Expr) -> pl.Expr:
    """Metro 2 Account Status (Field 17A) of an open account: "11" current to "84" 180+."""
    return _by_days(days_past_due, ACCOUNT_STATUSES)


def payment_rating(days_past_due: pl.Expr) -> pl.Expr:
    """Metro 2 Payment Rating (Field 17B) scale: "0" (0-29 days) to "6" (180 days and more)."""
    return _by_days(days_past_due, PAYMENT_RATINGS)
