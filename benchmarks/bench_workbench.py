"""Benchmark: the analysts' workbench at 1,000,000 loans, 20 concurrent sessions.

    uv run python benchmarks/bench_workbench.py [--warehouse FILE] [--sessions 20]
        [--seconds 60] [--think 0.5] [--baseline FILE]

Publishes the warehouse's latest night for the workbench (the snapshot a completed night
writes, built here from the warehouse opened read-only: its time is ``publish``), serves
it with ``lienwatch workbench`` in a process of its own, and has ``--sessions`` signed-in
analysts work it at once for ``--seconds``: each one, after ``--think`` seconds (drawn
from 0.5x to 1.5x), filters, searches, sorts or pages the queue, opens an account, records
a contact attempt or a note on it (a form drawn from the page, so a colleague's change
can make it stale: a refusal counts as an answer), reads the call list, their cases or
the portfolio. Response times are measured at the client, whole requests over HTTP.

Target: the 95th percentile under 200 ms on the reference machine (2 cores).
"""

from __future__ import annotations

import json
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import duckdb
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import parser, report, timed
from lienwatch.night import Night
from lienwatch.review import decisions, page
from lienwatch.settings import Settings, Workbench
from lienwatch.workbench import auth, publish
from lienwatch.workbench import store as stored
from lienwatch.workbench.store import open_store
from transforms import cases

WAREHOUSE = Path("/tmp/lienwatch-bench-real/night-1000000-realistic.after-first-night.duckdb")
PASSWORD = "benchmark password 1"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
VERSION = re.compile(r'name="version" value="(\d+)"')
TIERS = ("early_warning", "delinquent", "imminent_default", "default")
SORTS = ("rank", "dpd", "past_due", "balance", "name")


def published(warehouse: Path, folder: Path) -> tuple[Settings, list[str], float]:
    """Publish the warehouse's latest night into ``folder``; the settings that find it, a
    sample of its flagged loans, and the seconds the snapshot took."""
    settings = Settings(
        workbench=Workbench(
            snapshots=folder / "snapshots", database_url=f"sqlite:///{folder / 'store.sqlite'}"
        )
    )
    reader = duckdb.connect(str(warehouse), read_only=True)
    as_of = reader.execute("SELECT max(as_of_date) FROM risk_flags").fetchall()[0][0]
    night = Night(
        data=folder, db=folder / "wh.duckdb", out=folder / "out", as_of=as_of, run_id="bench"
    )
    queue = page.queue_frame(reader, as_of)
    call = cases.call_list(queue, decisions.decisions(reader, as_of), as_of)
    promises = decisions.promises_as_of(reader, as_of)
    model = page.page_model(reader, night, settings, queue, call, promises, queue.head(0))
    reader.close()
    figures = {k: v for k, v in model.items() if k not in ("queue", "detail")}
    # The review step builds the snapshot on the night's own connection; here the
    # warehouse is attached read-only to one that may write the snapshot's file.
    con = duckdb.connect()
    con.execute(f"ATTACH '{warehouse}' AS wh (READ_ONLY)")
    con.execute("USE wh")
    with timed() as took:
        publish.build(con, night, settings, queue, call, promises, lambda: figures)
        publish.switch(night, settings)
    con.close()
    loans = queue["loan_id"].sample(min(5000, queue.height), seed=7).to_list()
    print(f"published {as_of}: {queue.height:,} flagged, {call.height:,} calls due")
    return settings, loans, took["seconds"]


def serve(settings: Settings, folder: Path, sessions: int) -> tuple[subprocess.Popen, str]:
    store = open_store(settings.workbench.database_url or "")
    hashed = auth.hash_password(PASSWORD)
    for n in range(sessions):
        stored.add_user(store, f"analyst{n:02d}", "analyst", hashed)
    config = folder / "lienwatch.toml"
    config.write_text(
        "[workbench]\n"
        f'snapshots = "{settings.workbench.snapshots}"\n'
        f'database_url = "{settings.workbench.database_url}"\n'
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "lienwatch"),
            "workbench",
            *("--config", str(config), "--port", str(port)),
        ],
        cwd=folder,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(base + "/login", timeout=1)
            return server, base
        except httpx.TransportError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the workbench did not start") from None
            time.sleep(0.2)


def work(
    base: str,
    username: str,
    loans: list[str],
    start: threading.Barrier,
    seconds: float,
    think: float,
    seed: int,
) -> dict[str, list[float]]:
    """One analyst's session: (kind of request: response seconds). Signs in, waits for
    every session to have signed in, then works for ``seconds``."""
    rng = random.Random(seed)
    times: dict[str, list[float]] = defaultdict(list)
    with httpx.Client(base_url=base, timeout=30) as client:
        token = CSRF.search(client.get("/login").text).group(1)  # type: ignore[union-attr]
        started = time.perf_counter()
        client.post("/login", data={"csrf": token, "username": username, "password": PASSWORD})
        times["sign_in"].append(time.perf_counter() - started)
        start.wait()
        until = time.monotonic() + seconds
        account: str | None = None
        while time.monotonic() < until:
            time.sleep(think * rng.uniform(0.5, 1.5))
            roll = rng.random()
            method, params, data = "GET", None, None
            if roll < 0.40:
                kind, path = "queue", "/queue"
                params = rng.choice(
                    [
                        {"tier": rng.choice(TIERS)},
                        {"queue": "early_outreach", "page": str(rng.randint(1, 20))},
                        {"q": rng.choice(loans)[-4:]},
                        {"sort": rng.choice(SORTS), "dir": rng.choice(["asc", "desc"])},
                        {"queue": "default", "sort": "dpd"},
                    ]
                )
            elif roll < 0.75 or account is None:
                account = rng.choice(loans)
                kind, path = "account", f"/loans/{account}"
            elif roll < 0.85:
                kind, method, path = "record", "POST", f"/loans/{account}/decisions"
                form = client.get(f"/loans/{account}").text
                data = {
                    "csrf": CSRF.search(form).group(1),  # type: ignore[union-attr]
                    "version": VERSION.search(form).group(1),  # type: ignore[union-attr]
                    **rng.choice(
                        [
                            {"kind": "contact", "outcome": "no answer"},
                            {"kind": "note", "note": "asked for a call back"},
                        ]
                    ),
                }
            else:
                kind = rng.choice(["calls", "mine", "portfolio"])
                path = f"/{kind}"
            started = time.perf_counter()
            answer = client.request(method, path, params=params, data=data)
            times[kind].append(time.perf_counter() - started)
            if answer.status_code not in (200, 303, 409):
                times["errors"].append(float(answer.status_code))
    return times


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(int(share * len(ordered)), len(ordered) - 1)], 4)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--warehouse", type=Path, default=WAREHOUSE)
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--think", type=float, default=0.5, help="seconds between a session's requests")
    args = p.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-workbench-"))
    settings, loans, publish_seconds = published(args.warehouse, folder)
    server, base = serve(settings, folder, args.sessions)
    results: list[dict[str, list[float]]] = []
    try:
        start = threading.Barrier(args.sessions)
        threads = [
            threading.Thread(
                target=lambda n=n: results.append(
                    work(base, f"analyst{n:02d}", loans, start, args.seconds, args.think, n)
                )
            )
            for n in range(args.sessions)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        server.terminate()
        server.wait(timeout=30)
    merged: dict[str, list[float]] = defaultdict(list)
    for found in results:
        for kind, values in found.items():
            merged[kind].extend(values)
    errors = merged.pop("errors", [])
    signing_in = merged.pop("sign_in", [])
    every = [v for values in merged.values() for v in values]
    cases_: dict[str, dict] = {
        "all": {
            "requests": len(every),
            "errors": len(errors),
            "per_second": round(len(every) / args.seconds, 1),
            "p50_seconds": percentile(every, 0.50),
            "p95_seconds": percentile(every, 0.95),
            "p99_seconds": percentile(every, 0.99),
            "sessions": args.sessions,
            "think_seconds": args.think,
        },
        "publish": {"seconds": publish_seconds},
        "sign_in": {"p50_seconds": percentile(signing_in, 0.5), "max_seconds": max(signing_in)},
    }
    for kind, values in sorted(merged.items()):
        cases_[kind] = {
            "requests": len(values),
            "p50_seconds": percentile(values, 0.50),
            "p95_seconds": percentile(values, 0.95),
            "p99_seconds": percentile(values, 0.99),
        }
    print(json.dumps(cases_["all"]))
    report(f"workbench_{args.sessions}_sessions", cases_, args)


if __name__ == "__main__":
    main()
