"""The SQL the steps run against the warehouse: one ``<name>.sql`` file a query, run
with bound parameters (``$as_of`` and the like)."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def query(name: str) -> str:
    """The text of ``lienwatch/sql/<name>.sql``."""
    return resources.files(__package__).joinpath(f"{name}.sql").read_text(encoding="utf-8")
