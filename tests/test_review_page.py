"""The review page in a real browser: headless Chromium, driven over the DevTools protocol.

Chromium is started with ``--remote-debugging-pipe`` and spoken to with the standard
library only (JSON messages ended by a NUL byte on file descriptors 3 and 4), so the
test needs no browser-automation package. Chromium must be installed (Debian:
``apt-get install -y chromium``); without it these tests fail, they do not skip.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from lienwatch.settings import Settings
from tests.helpers import HOSTILE, NIGHT, PREVIOUS, build_warehouse, run_review

pytestmark = pytest.mark.slow

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
LOAD_BUDGET_SECONDS = 3.0


class Browser:
    """One headless Chromium process and its DevTools connection over a pipe."""

    def __init__(self, binary: str, profile: Path) -> None:
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()

        def descriptors() -> None:  # the browser reads commands on fd 3 and writes on fd 4
            os.dup2(to_browser_read, 3)
            os.dup2(from_browser_write, 4)

        args = [
            binary,
            "--headless",
            "--remote-debugging-pipe",
            f"--user-data-dir={profile}",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-gpu",
            "--disable-extensions",
            "--hide-scrollbars",
            "--disable-dev-shm-usage",
            "--window-size=1440,900",
        ]
        if os.geteuid() == 0:
            args.append("--no-sandbox")  # Chromium refuses to sandbox as root
        self.process = subprocess.Popen(
            [*args, "about:blank"],
            pass_fds=(3, 4),
            preexec_fn=descriptors,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(
        self,
        method: str,
        params: dict | None = None,
        session: str | None = None,
        timeout: float = 30,
    ) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        reply = self._until(lambda m: m.get("id") == self._next_id, timeout)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def wait_for(self, method: str, timeout: float = 30) -> dict[str, Any]:
        seen = next((e for e in self.events if e.get("method") == method), None)
        if seen is not None:
            self.events.remove(seen)
            return seen
        return self._until(lambda m: m.get("method") == method, timeout, keep=False)

    def _until(self, wanted, timeout: float, keep: bool = True) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, _, self._buffer = self._buffer.partition(b"\0")
                message = json.loads(raw)
                if wanted(message):
                    return message
                if "method" in message:
                    self.events.append(message)
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.call("Browser.close", timeout=5)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        os.close(self._to_browser)
        os.close(self._from_browser)


class Page:
    """A tab: navigate, evaluate, collect console errors and requests, take screenshots."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.call(
            "Target.attachToTarget", {"targetId": self.target, "flatten": True}
        )["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        # A name that runs as script would call alert: record it instead of blocking.
        self.call(
            "Page.addScriptToEvaluateOnNewDocument",
            {"source": "window.alert = function () { window.__alerted = true; };"},
        )

    def call(self, method: str, params: dict | None = None, timeout: float = 30) -> dict[str, Any]:
        return self.browser.call(method, params, self.session, timeout)

    def open(self, path: Path) -> float:
        """Open a file; seconds until it has loaded and its script has drawn the queue."""
        self.browser.events.clear()
        started = time.perf_counter()
        self.call("Page.navigate", {"url": path.resolve().as_uri()})
        self.browser.wait_for("Page.loadEventFired", timeout=60)
        while not self.js("document.body && document.body.hasAttribute('data-ready')"):
            time.sleep(0.01)
        return time.perf_counter() - started

    def js(self, expression: str) -> Any:
        reply = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in reply:
            raise AssertionError(f"{expression}: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and browser log errors (a blocked load among them)."""
        found = []
        for event in self.browser.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(json.dumps(params["exceptionDetails"])[:500])
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(json.dumps(params.get("args"))[:500])
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append(params["entry"].get("text", ""))
        return found

    def requests(self) -> list[str]:
        return [
            e["params"]["request"]["url"]
            for e in self.browser.events
            if e.get("method") == "Network.requestWillBeSent"
        ]

    def screenshot(self, path: Path) -> Path:
        shot = self.call(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False}
        )
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    binary = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    if binary is None:
        pytest.fail(
            "Chromium is needed for the review page tests and was not found on PATH "
            "(Debian: apt-get install -y chromium)",
            pytrace=False,
        )
    started = Browser(binary, tmp_path_factory.mktemp("chromium-profile"))
    try:
        started.call("Browser.getVersion", timeout=30)
        yield started
    finally:
        started.close()


@pytest.fixture
def page(browser):
    opened = Page(browser)
    opened.call(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1440, "height": 900, "deviceScaleFactor": 1, "mobile": False},
    )
    yield opened
    browser.call("Target.closeTarget", {"targetId": opened.target})


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
