"""The workbench in a real browser (headless Chromium, the project's own DevTools driver:
tests/browser.py): an analyst signs in, filters the queue, opens an account, records a
promise and sees it in the case history, and after the next night in its status; a
supervisor assigns a case and the analyst finds it under "my cases". Without Chromium
these tests fail, they do not skip."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from lienwatch import warehouse
from lienwatch.review import decisions
from lienwatch.settings import Settings
from lienwatch.workbench.app import create_app
from lienwatch.workbench.store import open_store, store_url
from tests.browser import Page
from tests.helpers import NIGHT, build_warehouse, default_dpd, run_review, write_night
from tests.served_app import serving
from tests.workbench_support import PASSWORD, add_users, publish_night

pytestmark = pytest.mark.slow

MORNING = datetime(2026, 11, 20, 10, 0)  # the business day of NIGHT: acts from the next night


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The small warehouse's night, published, one user per role, and the workbench
    serving it on the morning after."""
    db = tmp_path / "wh.duckdb"
    build_warehouse(db, tmp_path / "out")
    run_review(tmp_path)
    publish_night(db, NIGHT, f"review-{NIGHT}")
    add_users(db)
    with serving(create_app(Settings(), db, now=lambda: MORNING)) as base:
        yield base, tmp_path


def sign_in(page: Page, base: str, username: str) -> None:
    page.goto(base + "/queue")
    assert page.js("location.pathname") == "/login"
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.submit("form.login")
    assert page.js("location.pathname") == "/queue", page.text()


def sign_out(page: Page) -> None:
    page.submit("header form")
    assert page.js("location.pathname") == "/login"


def next_night(tmp_path: Path) -> None:
    """The next night, as far as the workbench sees it: it takes the decisions in, its
    review step runs, and it publishes."""
    night = NIGHT + timedelta(days=1)
    con = warehouse.connect(tmp_path / "wh.duckdb")
    try:
        decisions.take_in(con, open_store(store_url(Settings(), tmp_path / "wh.duckdb")))
        write_night(con, tmp_path / "out", night, {k: v + 1 for k, v in default_dpd(8).items()})
    finally:
        con.close()
    run_review(tmp_path, night)
    publish_night(tmp_path / "wh.duckdb", night, f"review-{night}")


class TestAnalyst:
    def test_filter_open_record_a_promise_and_see_its_status_after_the_next_night(
        self, page, served
    ):
        base, tmp_path = served
        sign_in(page, base, "ann")
        assert "of 8 matching" in page.text("p.count")
        tier = page.js("document.querySelector('table.queue tbody tr td:nth-child(4)').innerText")
        page.js(f"document.querySelector('select[name=tier]').value = '{tier}'")
        page.submit("form.filters")
        assert f"tier={tier}" in page.js("location.search")
        tiers = page.js(
            "[...document.querySelectorAll('table.queue tbody tr td:nth-child(4)')].map(t => t.innerText)"
        )
        assert tiers and set(tiers) == {tier} and len(tiers) < 8
        loan = page.js("document.querySelector('table.queue tbody a').innerText")
        page.click("table.queue tbody a")
        assert page.js("location.pathname") == f"/loans/{loan}"
        assert "Payment history" in page.text() and "Hardship options" in page.text()

        page.fill("#promise-form input[name=date]", "2026-11-28")
        page.fill("#promise-form input[name=amount]", "150.00")
        page.submit("#promise-form")
        assert "Saved: promise" in page.text(".saved")
        history = page.text("table.history-log")
        assert "$150.00 by 2026-11-28" in history and "ann" in history
        assert page.text("table.history-log tbody tr td.status") == ""  # not yet judged

        next_night(tmp_path)
        page.goto(base + f"/loans/{loan}")
        row = page.js(
            "[...document.querySelectorAll('table.history-log tbody tr')]"
            ".find(r => r.innerText.includes('$150.00')).querySelector('td.status').innerText"
        )
        assert row == "pending"
        assert "night of 2026-11-21" in page.text("header")
        assert page.errors() == []
        # nothing from elsewhere (data: is the browser's own date-picker icon)
        assert all(url.startswith((base, "data:")) for url in page.requests()), page.requests()


class TestSupervisor:
    def test_a_supervisor_assigns_a_case_and_the_analyst_sees_it_under_my_cases(self, page, served):
        base, _ = served
        sign_in(page, base, "sam")
        page.goto(base + "/loans/LN000003")
        page.js("document.querySelector('#assign-form select[name=to]').value = 'ann'")
        page.submit("#assign-form")
        assert "Saved: assignment" in page.text(".saved")
        assert page.text(".assigned") == "ann"
        sign_out(page)

        sign_in(page, base, "ann")
        page.click("a[href='/mine']")
        assert page.js("location.pathname") == "/mine"
        assert "LN000003" in page.text("table.mine")
        assert page.errors() == []
