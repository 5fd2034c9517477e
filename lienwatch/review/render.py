"""The review page: one self-contained HTML file (no server, no network) with its data,
script and styles inline."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import jinja2
from markupsafe import Markup

from lienwatch.errors import LienwatchError
from lienwatch.letters import TEMPLATES

REVIEW_TEMPLATES = TEMPLATES / "review"
PAGE = "review.html"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(REVIEW_TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # tojson escapes <, >, & and ' as \u escapes, so no text in the data can end the script
    # element it sits in; compact separators keep a 20,000-row page small.
    env.policies["json.dumps_kwargs"] = {"separators": (",", ":"), "ensure_ascii": False}
    env.filters["dollars"] = _dollars
    env.filters["cents"] = _cents
    env.filters["change"] = _change
    return env


def _dollars(value: float | Decimal | None) -> str:
    return "" if value is None else f"${value:,.0f}"


def _cents(value: float | Decimal | None) -> str:
    return "" if value is None else f"${value:,.2f}"


def _change(value: float | int | None, money: bool = False) -> str:
    """A change since the previous night, signed ("+12", "−$3,400", "±0")."""
    if value is None:
        return ""
    sign = "+" if value > 0 else "−" if value < 0 else "±"
    return sign + (_dollars(abs(value)) if money else f"{abs(value):,}")


def _asset(name: str, closing: str) -> Markup:
    """The page's script or style sheet, inlined as is (checked not to end its element)."""
    text = (REVIEW_TEMPLATES / name).read_text(encoding="utf-8")
    if closing in text.lower():
        raise LienwatchError(f"{REVIEW_TEMPLATES / name}: must not contain {closing}")
    return Markup(text)


def render_page(model: dict[str, Any]) -> str:
    """The review page: one HTML file with its data, script and styles inline."""
    template = _environment().get_template("review.html.j2")
    return template.render(
        **model, script=_asset("review.js", "</script"), style=_asset("review.css", "</style")
    )
