"""A night runs while analysts record decisions in the workbench: every decision is kept,
the night completes (and publishes), and the decisions act on the next night."""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from lienwatch import warehouse
from lienwatch.entry import run_night
from lienwatch.review import decisions
from lienwatch.settings import Settings
from lienwatch.workbench import store as stored
from lienwatch.workbench.app import create_app
from lienwatch.workbench.store import open_store, store_url
from tests.landing import landing, ledger
from tests.served_app import serving
from tests.workbench_support import add_users, csrf_of, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]
FIRST = date(2024, 6, 3)
MORNING = datetime(2024, 6, 4, 9, 0)  # the business day of the second night


def night(folder: Path, db: Path, as_of: date) -> dict:
    return run_night(Settings(), data=folder, db=db, out=db.parent / "out", as_of=as_of)


class Analyst(threading.Thread):
    """Records notes on one loan, one after another, until told to stop, then a last
    decision; keeps what it was told and when."""

    def __init__(self, base: str, username: str, loan: str, last: dict[str, str]) -> None:
        super().__init__(name=f"analyst-{username}", daemon=True)
        self.base, self.username, self.loan, self.last = base, username, loan, last
        self.stop = threading.Event()
        self.saved: list[datetime] = []
        self.failures: list[str] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=60) as client:
            assert sign_in(client, self.username).status_code == 303
            n = 0
            while not self.stop.is_set():
                n += 1
                self._record(client, {"kind": "note", "note": f"call {n}"})
                self.stop.wait(0.1)  # an analyst's pace, not a loop's
            self._record(client, self.last)

    def _record(self, client: httpx.Client, data: dict[str, str]) -> None:
        page = client.get(f"/loans/{self.loan}")
        version = page.text.split('name="version" value="', 1)[1].split('"', 1)[0]
        done = client.post(
            f"/loans/{self.loan}/decisions",
            data={**data, "csrf": csrf_of(page.text), "version": version},
        )
        if done.status_code == 303:
            self.saved.append(datetime.now())
        else:
            self.failures.append(f"{done.status_code}: {done.text[:200]}")


def test_a_night_runs_while_analysts_record_decisions(tmp_path):
    folder = landing(
        tmp_path / "in",
        {
            "p1.csv": ledger(
                "T1,L1,2024-03-01,250.00,payment,,", "T2,L2,2024-03-01,400.00,payment,,"
            ),
            "p2.csv": ledger("T3,L1,2024-04-01,250.00,payment,,"),
        },
    )
    db = tmp_path / "wh.duckdb"
    assert night(folder, db, FIRST)["status"] == "completed"  # publishes the first night
    add_users(db)
    store = open_store(store_url(Settings(), db))
    with serving(create_app(Settings(), db, now=lambda: MORNING)) as base:
        analysts = [
            Analyst(base, "ann", "L1", {"kind": "hold", "note": "disputes the balance"}),
            Analyst(base, "sam", "L2", {"kind": "application"}),
        ]
        for analyst in analysts:
            analyst.start()
        while not all(a.saved for a in analysts):  # both are at work before the night starts
            threading.Event().wait(0.05)
        started = datetime.now()
        summary = night(folder, db, FIRST + timedelta(days=1))
        ended = datetime.now()
        for analyst in analysts:
            analyst.stop.set()
        for analyst in analysts:
            analyst.join(timeout=120)
        assert summary["status"] == "completed"
        assert summary["steps"]["intake"]["decisions_taken_in"] >= 2
        for analyst in analysts:
            assert analyst.failures == []
            during = [t for t in analyst.saved if started <= t <= ended]
            assert len(during) >= 3, (analyst.name, len(during), ended - started)
        with httpx.Client(base_url=base) as client:  # the workbench reads the new night
            sign_in(client, "aud")
            assert "night of 2024-06-04" in client.get("/queue").text

    kept = stored.decision_rows(store)
    assert len(kept) == sum(len(a.saved) for a in analysts)  # every decision is kept
    assert night(folder, db, FIRST + timedelta(days=2))["status"] == "completed"
    con = warehouse.connect(db, read_only=True)
    try:
        taken = {r[0] for r in con.execute("SELECT decision_id FROM review_decisions").fetchall()}
        assert taken == {r["decision_id"] for r in kept}
        third = FIRST + timedelta(days=2)
        assert decisions.holds_as_of(con, third)["loan_id"].to_list() == ["L1"]
        assert decisions.application_cases(con, third)["loan_id"].to_list() == ["L2"]
    finally:
        con.close()
