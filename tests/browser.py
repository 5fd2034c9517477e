"""The project's own headless-Chromium driver over the DevTools protocol, shared by the
browser tests (the review page, the workbench).

Chromium is started with ``--remote-debugging-pipe`` and spoken to with the standard
library only (JSON messages ended by a NUL byte on file descriptors 3 and 4), so the
tests need no browser-automation package. Chromium must be installed (Debian:
``apt-get install -y chromium``); without it the tests fail, they do not skip.
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


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

    def goto(self, url: str) -> None:
        """Open ``url`` and wait until it has loaded."""
        self.browser.events.clear()
        self.call("Page.navigate", {"url": url})
        self.browser.wait_for("Page.loadEventFired", timeout=60)

    def click(self, selector: str) -> None:
        """Click a link as a user would, and wait for the page it leads to."""
        self.browser.events.clear()
        self.js(f"document.querySelector({json.dumps(selector)}).click()")
        self.browser.wait_for("Page.loadEventFired", timeout=60)

    def fill(self, selector: str, value: str) -> None:
        self.js(f"document.querySelector({json.dumps(selector)}).value = {json.dumps(value)}")

    def text(self, selector: str = "body") -> str:
        return self.js(f"document.querySelector({json.dumps(selector)}).innerText")

    def submit(self, form_selector: str) -> None:
        """Submit a form as its button would, and wait for the page it leads to."""
        self.browser.events.clear()
        self.js(f"document.querySelector({json.dumps(form_selector)}).requestSubmit()")
        self.browser.wait_for("Page.loadEventFired", timeout=60)

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


def started_browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """A headless Chromium for a module's tests (fails, never skips, without one)."""
    binary = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    if binary is None:
        pytest.fail(
            "Chromium is needed for the browser tests and was not found on PATH "
            "(Debian: apt-get install -y chromium)",
            pytrace=False,
        )
    started = Browser(binary, tmp_path_factory.mktemp("chromium-profile"))
    try:
        started.call("Browser.getVersion", timeout=30)
        yield started
    finally:
        started.close()


def opened_page(browser: Browser) -> Iterator[Page]:
    """A tab at the size the tests measure in, closed after the test."""
    opened = Page(browser)
    opened.call(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1440, "height": 900, "deviceScaleFactor": 1, "mobile": False},
    )
    yield opened
    browser.call("Target.closeTarget", {"targetId": opened.target})
