"""Fuzzing the landing folder: whatever the bytes, a file ends loaded, quarantined or refused
with a message naming it, never a traceback, and rows read = rows loaded + rows quarantined."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lienwatch.errors import LienwatchError
from lienwatch.ingest import ingest
from lienwatch.warehouse import connect
from tests.helpers import conserved
from tests.landing import PAYMENT_HEADER, landing

FIGURES = {"files": 0, "loaded": 0, "quarantined": 0, "refused": 0, "rows_read": 0}

GOOD = [
    "T{n},L1,2024-03-01,250.00,payment,,",
    "T{n},L2,2024-04-01,400.00,payment,,",
    "R{n},L1,2024-03-05,250.00,reversal,T1,NSF",
]
FIELD = st.one_of(
    st.sampled_from(
        [
            "",
            "L1",
            "L2",
            "2024-03-01",
            "2024-02-30",
            "9999-12-31",
            "0001-01-01",
            "250.00",
            "-5",
            "1e309",
            "99999999999999999999.99",
            "payment",
            "reversal",
            "NSF",
            '"',
            '""',
            "a,b",
            "\u00e9",
            "\U0001f600",
            " 250.00 ",
            "NaN",
            "null",
            "\\",
            "\t",
            "\x00",
        ]
    ),
    st.text(max_size=12),
)


@st.composite
def ledger_file(draw) -> bytes:
    """A payments file: good rows, rows of random fields (too few, too many), odd bytes."""
    rows = []
    for n in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["good", "fields", "truncated", "bytes"]))
        if kind == "good":
            rows.append(draw(st.sampled_from(GOOD)).format(n=n))
        elif kind == "fields":
            rows.append(",".join(draw(st.lists(FIELD, min_size=1, max_size=10))))
        elif kind == "truncated":
            rows.append(draw(st.sampled_from(GOOD)).format(n=n)[: draw(st.integers(0, 20))])
        else:
            rows.append(draw(st.binary(max_size=30)).decode("latin-1"))
    header = draw(
        st.sampled_from(
            [
                PAYMENT_HEADER,
                PAYMENT_HEADER.upper(),
                "\ufeff" + PAYMENT_HEADER,
                PAYMENT_HEADER.replace(",return_reason", ""),
                "",
            ]
        )
    )
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = header.replace("\n", newline) + newline.join(rows) + draw(st.sampled_from(["", newline]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-16", "latin-1"]))
    return text.encode(encoding, errors="replace")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files=st.lists(ledger_file(), min_size=1, max_size=3))
def test_any_ledger_file_is_loaded_quarantined_or_refused(files):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = landing(root / "in", {f"f{i}.csv": body for i, body in enumerate(files)})
        con = connect(root / "wh.duckdb")
        try:
            FIGURES["files"] += len(files)
            try:
                ingest(con, data)
            except LienwatchError as exc:
                message = str(exc)
                assert message.startswith(("payments/f", "loans.csv", "borrowers.csv")), message
                assert "\n" not in message.strip() and "Traceback" not in message
                FIGURES["refused"] += 1
                return
            conserved(con)
            read, loaded, bad = con.execute(
                "SELECT sum(rows_read), sum(rows_loaded), sum(rows_quarantined) FROM ingested_files "
                "WHERE feed = 'payments'"
            ).fetchall()[0]
            FIGURES["rows_read"] += read or 0
            FIGURES["loaded"] += loaded or 0
            FIGURES["quarantined"] += bad or 0
        finally:
            con.close()


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    print("\nfuzzing figures: " + json.dumps(FIGURES))
