"""Each early-warning signal fires end to end from real ledger rows, and its near miss does not.

One small landing folder holds one loan per scenario (the scenario's name is its loan
id); one night is run through the real steps (ingest, delinquency, flags) and the
tests read what the night wrote to ``risk_flags``.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pytest

from lienwatch.night import Night
from lienwatch.settings import Settings
from lienwatch.steps import delinquency as delinquency_step
from lienwatch.steps import flags as flags_step
from lienwatch.steps import ingest as ingest_step
from tests.landing import landing, ledger

AS_OF = date(2024, 6, 25)
FIRST_DUE = date(2024, 1, 1)  # installments of 100.00 due on the 1st, January to June by AS_OF
LOAN_HEADER = (
    "loan_id,borrower_id,lien_position,product,origination_date,first_payment_date,scheduled_payment,"
    "term_months,interest_rate,original_balance,current_balance,property_state,occupancy,"
    "property_value,senior_lien_balance,draw_period_end,status\n"
)


def loan_row(
    loan_id: str,
    *,
    lien: int = 2,
    value: str = "500000.00",
    senior: str = "300000.00",
    borrower: str = "B2",
) -> str:
    return (
        f"{loan_id},{borrower},{lien},closed_end,2023-12-01,{FIRST_DUE},100.00,120,8.0,"
        f"10000.00,9000.00,CA,primary,{value},{senior},,active\n"
    )


def due(k: int) -> date:
    return date(2024, 1 + k, 1)


def payments(
    loan_id: str,
    posted: dict[int, date | None] | None = None,
    amounts: dict[int, str] | None = None,
) -> list[str]:
    """One payment per installment due by AS_OF, on its due date unless ``posted`` says
    otherwise (None: not paid); ``amounts`` overrides an amount."""
    posted, amounts = posted or {}, amounts or {}
    rows = []
    for k in range(6):
        day = posted.get(k, due(k))
        if day is not None:
            rows.append(f"{loan_id}-{k},{loan_id},{day},{amounts.get(k, '100.00')},payment,,")
    return rows


# Scenario loans: "<signal>" fires it, "<signal>_near" is its near miss.
SCENARIOS: dict[str, tuple[str, list[str]]] = {
    "quiet": (loan_row("quiet"), payments("quiet")),
    # A payment returned unpaid 51 days ago (within the 90-day look-back), paid again next day.
    "returned": (
        loan_row("returned"),
        [
            *payments("returned", posted={4: date(2024, 5, 6)}),
            "returned-4x,returned,2024-05-01,100.00,payment,,",
            "returned-R,returned,2024-05-05,100.00,reversal,returned-4x,NSF",
        ],
    ),
    # The same, 112 days ago: outside the look-back.
    "returned_near": (
        loan_row("returned_near"),
        [
            *payments("returned_near", posted={2: date(2024, 3, 6)}),
            "returned_near-2x,returned_near,2024-03-01,100.00,payment,,",
            "returned_near-R,returned_near,2024-03-05,100.00,reversal,returned_near-2x,NSF",
        ],
    ),
    # The last three installments paid 3, 9 and 20 days late.
    "later": (
        loan_row("later"),
        payments("later", posted={3: date(2024, 4, 4), 4: date(2024, 5, 10), 5: date(2024, 6, 21)}),
    ),
    # 3, 9 and 9 days late: not rising, none over 15.
    "later_near": (
        loan_row("later_near"),
        payments(
            "later_near", posted={3: date(2024, 4, 4), 4: date(2024, 5, 10), 5: date(2024, 6, 10)}
        ),
    ),
    # June paid 60.00 of 100.00: held in suspense while 40.00 is owed.
    "partial": (loan_row("partial"), payments("partial", amounts={5: "60.00"})),
    # June paid in full on the night itself.
    "partial_near": (loan_row("partial_near"), payments("partial_near", posted={5: AS_OF})),
    # June not paid: 24 days past due.
    "early": (loan_row("early"), payments("early", posted={5: None})),
    # The payment scheduled to rise by 20 % within the horizon, and by 19.99 %.
    "shock": (loan_row("shock"), payments("shock")),
    "shock_near": (loan_row("shock_near"), payments("shock_near")),
    # The first mortgage reported 30 days past due, and 29 (a later report, after the
    # night, does not count yet).
    "senior": (loan_row("senior"), payments("senior")),
    "senior_near": (loan_row("senior_near"), payments("senior_near")),
    # Combined loan-to-value just above 100 %, and exactly 100 %.
    "underwater": (
        loan_row("underwater", value="300000.00", senior="291000.01"),
        payments("underwater"),
    ),
    "underwater_near": (
        loan_row("underwater_near", value="300000.00", senior="291000.00"),
        payments("underwater_near"),
    ),
    # Tiers: unpaid since March (116 days), April (85) and May (55).
    "default": (
        loan_row("default"),
        payments("default", posted={2: None, 3: None, 4: None, 5: None}),
    ),
    "imminent": (loan_row("imminent"), payments("imminent", posted={3: None, 4: None, 5: None})),
    "delinquent": (loan_row("delinquent"), payments("delinquent", posted={4: None, 5: None})),
    # A first lien far behind is never flagged.
    "first_lien": (
        loan_row("first_lien", lien=1),
        payments("first_lien", posted={k: None for k in range(1, 6)}),
    ),
}

PAYMENT_CHANGES = """\
loan_id,effective_due_date,scheduled_payment
shock,2024-08-01,120.00
shock_near,2024-08-01,119.99
"""

SENIOR_LIENS = """\
loan_id,reported_date,senior_days_past_due
senior,2024-05-31,30
senior_near,2024-05-31,29
senior_near,2024-06-30,90
"""

EXPECTED = {
    "returned": "returned_payment",
    "later": "paying_later",
    "partial": "partial_or_suspense",
    "early": "early_delinquency",
    "shock": "payment_shock",
    "senior": "senior_lien_delinquent",
    "underwater": "underwater",
}


@pytest.fixture(scope="module")
def tonight(tmp_path_factory) -> Night:
    """One night for every scenario, up to its flags."""
    root: Path = tmp_path_factory.mktemp("signals")
    rows = [row for _, pays in SCENARIOS.values() for row in pays]
    half = len(rows) // 2
    data = landing(
        root / "in",
        {"p1.csv": ledger(*rows[:half]), "p2.csv": ledger(*rows[half:])},
        loans=LOAN_HEADER + "".join(loan for loan, _ in SCENARIOS.values()),
        payment_changes=PAYMENT_CHANGES,
        senior_liens=SENIOR_LIENS,
    )
    night = Night(data=data, db=root / "wh.duckdb", out=root / "out", as_of=AS_OF, run_id="signals")
    settings = Settings()
    assert ingest_step.run(night)["rows_quarantined"] == 0
    delinquency_step.run(night, settings)
    flags_step.run(night, settings)
    return night


@pytest.fixture(scope="module")
def night(tonight) -> dict[str, dict]:
    """The night's risk_flags rows by loan id."""
    con = duckdb.connect(str(tonight.db), read_only=True)
    try:
        frame = con.sql(
            "SELECT * FROM risk_flags WHERE as_of_date = $d ORDER BY queue_rank",
            params={"d": AS_OF},
        ).pl()
    finally:
        con.close()
    return {row["loan_id"]: row for row in frame.to_dicts()}


@pytest.fixture(scope="module")
def raised(tonight) -> dict[str, list[str]]:
    """The signals raised for each loan, flagged or not."""
    con = duckdb.connect(str(tonight.db), read_only=True)
    try:
        _, found = flags_step.features_as_of(con, Settings(), AS_OF, "loan_status")
    finally:
        con.close()
    return {loan: signals for loan, signals in found.group_by("loan_id").agg("signal").rows()}


def reasons(night: dict[str, dict], loan_id: str) -> list[str]:
    return night[loan_id]["reasons"] if loan_id in night else []


@pytest.mark.parametrize(("loan_id", "signal"), sorted(EXPECTED.items()))
def test_signal_fires_from_the_ledger(night, raised, loan_id, signal):
    """The scenario's rows raise its signal; each flags its loan but being underwater,
    which is never enough alone."""
    assert signal in raised[loan_id]
    if signal == "underwater":
        assert loan_id not in night
    else:
        assert signal in reasons(night, loan_id)


@pytest.mark.parametrize(("loan_id", "signal"), sorted(EXPECTED.items()))
def test_near_miss_does_not_fire(night, loan_id, signal):
    """Just short of the threshold, the signal is not raised (and a quiet loan is not flagged)."""
    assert signal not in reasons(night, f"{loan_id}_near")
    assert f"{loan_id}_near" not in night


def test_quiet_loan_and_first_lien_not_flagged(night):
    """A second lien paying on time raises nothing; a first lien is never flagged."""
    assert "quiet" not in night
    assert "first_lien" not in night


def test_details_carry_the_ledger_figures(night):
    """The reason texts show the figures read from the ledger."""
    details = dict(zip(night["later"]["reasons"], night["later"]["reason_details"], strict=True))
    assert "3, 9, 20 days" in details["paying_later"]
    details = dict(
        zip(night["returned"]["reasons"], night["returned"]["reason_details"], strict=True)
    )
    assert (
        "1 payment(s)" in details["returned_payment"]
        and "2024-05-05" in details["returned_payment"]
    )
    details = dict(
        zip(night["partial"]["reasons"], night["partial"]["reason_details"], strict=True)
    )
    assert "$60.00 received is held unapplied" in details["partial_or_suspense"]
    details = dict(zip(night["shock"]["reasons"], night["shock"]["reason_details"], strict=True))
    assert "$100.00 to $120.00 (20% more)" in details["payment_shock"]


def test_tiers_from_days_past_due(night):
    """Days past due from the missed installments set the tier."""
    assert {
        loan: (night[loan]["days_past_due"], night[loan]["tier"])
        for loan in ("default", "imminent", "delinquent", "early")
    } == {
        "default": (116, "default"),
        "imminent": (85, "imminent_default"),
        "delinquent": (55, "delinquent"),
        "early": (24, "early_warning"),
    }
    for loan in EXPECTED:
        if loan not in ("early", "underwater"):
            assert night[loan]["tier"] == "early_warning", loan


def test_queue_order(night):
    """The early-outreach queue first, worse tiers first, then by score; the default list
    after it, outside the capacity; ranks run 1..n."""
    order = sorted(night.values(), key=lambda r: r["queue_rank"])
    assert [r["loan_id"] for r in order[:2]] == ["imminent", "delinquent"]
    assert [r["loan_id"] for r in order if r["queue"] == "default"] == ["default"]
    assert order[-1]["loan_id"] == "default" and not order[-1]["in_queue"]
    assert [r["queue_rank"] for r in order] == list(range(1, len(order) + 1))
    early = [r for r in order if r["tier"] == "early_warning"]
    assert [r["score"] for r in early] == sorted((r["score"] for r in early), reverse=True)
    assert all(r["in_queue"] for r in order[:-1])
