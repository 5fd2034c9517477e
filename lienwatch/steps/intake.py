"""The night's first step: the analysts' decisions recorded since the last night (in the
workbench store) are taken into the warehouse, where the night's look-ups read them."""

from __future__ import annotations

from typing import Any

from lienwatch import warehouse
from lienwatch.night import Night
from lienwatch.review import decisions
from lienwatch.settings import Settings
from lienwatch.workbench.store import open_store, store_url


def run(night: Night, settings: Settings) -> dict[str, Any]:
    store = open_store(store_url(settings, night.db))
    con = warehouse.connect(night.db)
    try:
        return {"decisions_taken_in": decisions.take_in(con, store)}
    finally:
        con.close()
