"""Money as exact cents and as the text a borrower or an analyst reads."""

from __future__ import annotations

import polars as pl


def cents(expr: pl.Expr) -> pl.Expr:
    """A decimal dollar amount as whole cents (Int64), exactly."""
    return (expr.cast(pl.Decimal(18, 2)) * 100).cast(pl.Int64)


def from_cents(expr: pl.Expr) -> pl.Expr:
    """Whole cents back to a DECIMAL(14,2) dollar amount, exactly."""
    return expr.cast(pl.Decimal(18, 0)).cast(pl.Decimal(18, 2)).truediv(100).cast(pl.Decimal(14, 2))


def money_text(cents_expr: pl.Expr) -> pl.Expr:
    """Whole cents as dollars with thousands separators: 123456750 -> "$1,234,567.50"."""
    negative = cents_expr < 0
    amount = cents_expr.abs()
    dollars, rest = amount // 100, (amount % 100).cast(pl.String).str.zfill(2)

    def group(n: int) -> pl.Expr:
        thousands: int = 10 ** (3 * n)  # int ** int is typed Any (a negative power is a float)
        return ((dollars // thousands) % 1000).cast(pl.String)

    def padded(n: int) -> pl.Expr:
        return group(n).str.zfill(3)

    whole = (
        pl.when(dollars >= 10**9)
        .then(pl.format("{},{},{},{}", group(3), padded(2), padded(1), padded(0)))
        .when(dollars >= 10**6)
        .then(pl.format("{},{},{}", group(2), padded(1), padded(0)))
        .when(dollars >= 10**3)
        .then(pl.format("{},{}", group(1), padded(0)))
        .otherwise(group(0))
    )
    return (
        pl.when(negative)
        .then(pl.format("-${}.{}", whole, rest))
        .otherwise(pl.format("${}.{}", whole, rest))
    )
