"""The review page in a real browser: headless Chromium, driven over the DevTools protocol
by the project's own driver (tests/browser.py). Chromium must be installed (Debian:
``apt-get install -y chromium``); without it these tests fail, they do not skip.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest

from lienwatch.settings import Settings
from tests.browser import Page
from tests.helpers import HOSTILE, NIGHT, PREVIOUS, build_warehouse, run_review

pytestmark = pytest.mark.slow

LOAD_BUDGET_SECONDS = 3.0


def shown(page: Page) -> tuple[str, int]:
    """The "Showing N of M" line and the number of rows drawn."""
    return page.js("document.getElementById('shown').textContent"), page.js(
        "document.querySelectorAll('#queue-table tbody tr').length"
    )


def choose(page: Page, select_id: str, label: str) -> None:
    """Pick the option with this text in a filter, as a user would."""
    page.js(f"""(() => {{
        const s = document.getElementById({json.dumps(select_id)});
        const o = Array.from(s.options).find(o => o.textContent === {json.dumps(label)});
        if (!o) throw new Error('no option ' + {json.dumps(label)});
        s.value = o.value;
        s.dispatchEvent(new Event('change', {{bubbles: true}}));
    }})()""")


def search(page: Page, text: str) -> None:
    page.js(f"""(() => {{
        const box = document.getElementById('search');
        box.value = {json.dumps(text)};
        box.dispatchEvent(new Event('input', {{bubbles: true}}));
    }})()""")
    time.sleep(0.3)  # the search waits for typing to pause


class TestReviewPage:
    def test_filters_search_and_the_account_detail(self, tmp_path, page):
        build_warehouse(tmp_path / "wh.duckdb", tmp_path / "out")
        run_review(tmp_path, PREVIOUS)
        run_review(tmp_path)
        html = tmp_path / "out" / NIGHT.isoformat() / "review.html"
        page.open(html)
        assert shown(page) == ("Showing 8 of 8", 8)
        first = page.js(
            "Array.from(document.querySelectorAll('#queue-table tbody tr td:nth-child(2)')).map(td => td.textContent)"
        )
        assert first[:2] == ["LN000006", "LN000000"]  # queue order: tier, then score

        choose(page, "f-tier", "delinquent")
        assert shown(page) == ("Showing 3 of 8", 3)
        choose(page, "f-language", "en")
        assert shown(page) == ("Showing 3 of 8", 3)
        choose(page, "f-letter", "suppressed")
        assert shown(page) == ("Showing 1 of 8", 1)
        page.js("document.getElementById('reset').click()")
        time.sleep(0.1)
        assert shown(page) == ("Showing 8 of 8", 8)
        choose(page, "f-reason", "worsening bucket")
        assert shown(page) == ("Showing 2 of 8", 2)
        choose(page, "f-state", "NY")
        assert shown(page) == ("Showing 1 of 8", 1)
        page.js("document.getElementById('reset').click()")
        time.sleep(0.1)
        choose(page, "f-product", "heloc")
        assert shown(page) == ("Showing 2 of 8", 2)
        page.js("document.getElementById('reset').click()")
        search(page, "ln000003")
        assert shown(page) == ("Showing 1 of 8", 1)
        search(page, "<script>alert")  # the hostile borrower, found by name
        assert shown(page) == ("Showing 1 of 8", 1)
        assert page.js(
            "document.querySelector('#queue-table tbody td.name').textContent"
        ).startswith(HOSTILE)
        search(page, "")
        page.js("document.querySelector('th[data-key=dpd]').click()")  # most days past due first
        assert (
            page.js("document.querySelector('#queue-table tbody td:nth-child(6)').textContent")
            == "200"
        )
        page.js("document.querySelector('th[data-key=dpd]').click()")
        assert (
            page.js("document.querySelector('#queue-table tbody td:nth-child(6)').textContent")
            == "0"
        )

        page.js("document.querySelector('#queue-table tbody tr[data-loan=LN000000]').click()")
        assert page.js("document.getElementById('detail').hidden") is False
        title = page.js("document.getElementById('detail-title').textContent")
        assert title == f"LN000000 · {HOSTILE} Garcia"
        text = page.js("document.getElementById('detail-body').innerText")
        day_36 = (NIGHT - timedelta(days=95 - 36)).isoformat()
        for expected in (
            "Live contact (day 36)",
            day_36,
            "Written notice (day 45)",
            "Senior lien 60 days past due (reported 2026-10-31)",
            "repayment plan",
            "6 payments of $612.50",
            "Not eligible (1)",
            "flagged default at 94 days past due",
            "senior lien delinquent seen on LN000000",
            "lienwatch review contact --loan LN000000",
        ):
            assert expected in text, expected
        assert (
            page.js(
                "document.querySelectorAll('#detail svg.history g:not(.legend) rect.paid').length"
            )
            == 25
        )
        assert (
            page.js("document.querySelector('#detail a[href]').getAttribute('href')")
            == "letters/L20261120-LN000000.pdf"
        )
        page.screenshot(tmp_path / "review-detail.png")
        page.js("document.dispatchEvent(new KeyboardEvent('keydown', {key: 'Escape'}))")
        assert page.js("document.getElementById('detail').hidden") is True

        page.js("document.getElementById('tab-calls').click()")
        assert page.js("document.querySelectorAll('#call-table tbody tr').length") == 5
        page.js("document.querySelector('#call-table tbody tr').click()")
        assert page.js("document.getElementById('detail-title').textContent").startswith("LN000006")
        page.js("document.getElementById('detail-close').click()")
        page.js("document.getElementById('tab-summary').click()")
        summary = page.js("document.getElementById('summary').innerText")
        for expected in (
            "Active loans by bucket",
            "Roll rates, month ended 2026-10-31",
            "current_balance: not an amount",
            "letter … sent on …",
            "cases opened",
        ):
            assert expected in summary, expected
        shot = page.screenshot(tmp_path / "review-summary.png")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

        assert page.js("window.__alerted === true") is False
        assert page.errors() == []
        assert {url.split(":", 1)[0] for url in page.requests()} <= {"file", "data"}

    def test_twenty_thousand_rows_load_in_under_three_seconds(self, tmp_path, page):
        build_warehouse(tmp_path / "wh.duckdb", tmp_path / "out", n=20_000, nights=(NIGHT,))
        counts = run_review(
            tmp_path, settings=Settings.model_validate({"risk": {"review_page_rows": 20_000}})
        )
        html = tmp_path / "out" / NIGHT.isoformat() / "review.html"
        seconds = page.open(html)
        ready_ms = int(page.js("document.body.getAttribute('data-ready')"))
        print(
            f"\n20,000 rows: {html.stat().st_size / 1e6:.1f} MB ({counts['page_kb']} kB), "
            f"loaded and drawn in {seconds:.2f} s (script done at {ready_ms} ms)"
        )
        assert seconds < LOAD_BUDGET_SECONDS
        assert shown(page) == ("Showing 20,000 of 20,000", 200)
        page.js("document.getElementById('next').click()")
        assert page.js("document.querySelector('#queue-table tbody td').textContent") == "201"
        choose(page, "f-tier", "imminent default")
        assert shown(page) == ("Showing 2,500 of 20,000", 200)
        search(page, "LN019996")
        assert shown(page) == ("Showing 1 of 20,000", 1)
        started = time.perf_counter()
        page.js("document.querySelector('#queue-table tbody tr').click()")
        opened = time.perf_counter() - started
        print(f"first account detail opened in {opened:.2f} s")
        assert page.js("document.getElementById('detail-title').textContent").startswith("LN019996")
        assert opened < LOAD_BUDGET_SECONDS
        page.screenshot(tmp_path / "review-20k.png")
        assert page.errors() == []
