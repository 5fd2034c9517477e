"""Privacy: no borrower's name, address, e-mail or full loan number in logs, artifacts or errors;
outputs readable by the owner only; letters show only the last four characters."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from lienwatch.generate import generate

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]
AS_OF = "2026-11-20"


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> dict:
    """A generated portfolio with a few malformed rows, run through one night by the CLI."""
    root = tmp_path_factory.mktemp("privacy")
    data = root / "in"
    generate(data, loans=300, months=4, seed=11)
    borrowers = (data / "borrowers.csv").read_text(encoding="utf-8").splitlines()
    # Two bad rows that name a borrower: both end in quarantine, neither in a log line.
    fields = borrowers[1].split(",")
    fields[0], fields[8] = "BX1", "klingon"
    borrowers.append(",".join(fields))
    (data / "borrowers.csv").write_text("\n".join(borrowers) + "\n", encoding="utf-8")
    (data / "payments" / "zz-bad.csv").write_text(
        "txn_id,loan_id,posted_date,amount,txn_type,reverses_txn_id,return_reason\n"
        "BAD1,NOPE-LOAN-123456,2026-11-20,12.00,payment,,\n",
        encoding="utf-8",
    )

    from prefect.settings import PREFECT_API_URL

    env = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value() or "",
        "PREFECT_LOGGING_LEVEL": "DEBUG",
    }
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "lienwatch"),
            "run",
            "--data",
            str(data),
            "--db",
            str(root / "wh.duckdb"),
            "--out",
            str(root / "out"),
            "--as-of",
            AS_OF,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return {"root": root, "data": data, "log": done.stdout + done.stderr}


def secrets(data: Path) -> list[str]:
    """Every value that must never appear outside the warehouse and the letters."""
    people = pl.read_csv(data / "borrowers.csv", infer_schema=False)
    loans = pl.read_csv(data / "loans.csv", infer_schema=False)
    values = [
        f"{first} {last}"
        for first, last in zip(people["first_name"], people["last_name"], strict=True)
    ]
    values += people["address_line1"].to_list() + people["email"].drop_nulls().to_list()
    values += [*loans["loan_id"].to_list(), "NOPE-LOAN-123456"]
    return [v for v in values if v and len(v) >= 6]


def artifacts_text() -> str:
    from prefect.client.orchestration import get_client

    async def read() -> str:
        async with get_client() as client:
            found = await client.read_artifacts()
            return "\n".join(str(a.data) + str(a.description) for a in found)

    return asyncio.run(read())


def test_logs_artifacts_and_summaries_hold_no_borrower_data(night):
    texts = {"run log": night["log"], "artifacts": artifacts_text()}
    for path in (night["root"] / "out").rglob("*.json"):
        texts[str(path.name)] = path.read_text(encoding="utf-8")
    assert "completed" in night["log"] and len(texts["artifacts"]) > 100
    leaks = {
        (name, value)
        for name, text in texts.items()
        for value in secrets(night["data"])
        if value in text
    }
    assert not leaks, sorted(leaks)[:10]


def test_error_messages_name_file_row_and_column_not_values(night):
    import duckdb

    con = duckdb.connect(str(night["root"] / "wh.duckdb"), read_only=True)
    try:
        errors = [r[0] for r in con.execute("SELECT error FROM quarantine").fetchall()]
    finally:
        con.close()
    assert len(errors) == 2
    for value in secrets(night["data"]):
        assert not any(value in e for e in errors), value


def test_outputs_are_owner_only(night):
    root = night["root"]
    for path in [root / "wh.duckdb", *(root / "out").rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path}: {oct(mode)}"


def test_letters_show_only_the_last_four(night):
    day = night["root"] / "out" / AS_OF
    loans = pl.read_csv(night["data"] / "loans.csv", infer_schema=False)["loan_id"].to_list()
    pages = list((day / "letters").glob("*.html"))
    assert pages
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert not any(loan in text for loan in loans), page.name


def test_no_secrets_in_the_repository():
    repo = Path(__file__).resolve().parents[1]
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.split()
    patterns = (
        "BEGIN RSA PRIVATE KEY",
        "BEGIN OPENSSH PRIVATE KEY",
        "aws_secret_access_key",
        "AKIA",
        "ghp_",
        "xoxb-",
        "password=",
    )
    for name in tracked:
        path = repo / name
        if path.suffix in {".csv", ".parquet", ".lock"} or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="ignore")
        found = [p for p in patterns if p in text and name != "tests/test_privacy.py"]
        assert not found, (name, found)
