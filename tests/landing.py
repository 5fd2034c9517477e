"""Builders for small hand-made landing folders (one scenario per test)."""

from __future__ import annotations

from pathlib import Path

BORROWERS = """\
borrower_id,first_name,last_name,address_line1,address_line2,city,state,zip,preferred_language,email,phone,bankruptcy,cease_communication,deceased,bankruptcy_filed_date
B1,José,Núñez,12 Elm St,"Apt 4, Rear",Fresno,CA,93701,es,,,false,false,false,
B2,Ann,O'Brien,5 Oak Ave,,Davis,CA,95616,en,ann@example.com,(530) 555-0100,no,n,0,
"""

LOANS = """\
loan_id,borrower_id,lien_position,product,origination_date,first_payment_date,scheduled_payment,term_months,interest_rate,original_balance,current_balance,property_state,occupancy,property_value,senior_lien_balance,draw_period_end,status
L1,B1,2,closed_end,2024-01-15,2024-03-01,250.00,180,8.5,30000.00,28000.00,CA,primary,500000.00,350000.00,,active
L2,B2,2,heloc,2023-05-01,2023-06-01,400.00,240,9.25,50000.00,49000.00,CA,primary,600000.00,400000.00,2033-06-01,active
"""

PAYMENT_HEADER = "txn_id,loan_id,posted_date,amount,txn_type,reverses_txn_id,return_reason\n"


def landing(
    root: Path,
    payments: dict[str, str | bytes] | None = None,
    *,
    loans: str = LOANS,
    borrowers: str = BORROWERS,
    **optional: str,
) -> Path:
    """Write a landing folder under ``root``: snapshots, optional feeds and ledger files."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "loans.csv").write_text(loans, encoding="utf-8")
    (root / "borrowers.csv").write_text(borrowers, encoding="utf-8")
    for name, text in optional.items():
        (root / f"{name}.csv").write_text(text, encoding="utf-8")
    ledger = root / "payments"
    ledger.mkdir(exist_ok=True)
    for name, body in (payments or {}).items():
        data = body if isinstance(body, bytes) else body.encode("utf-8")
        (ledger / name).write_bytes(data)
    return root


def ledger(*rows: str) -> str:
    """A payments CSV with the contract's header and the given rows."""
    return PAYMENT_HEADER + "".join(f"{r}\n" for r in rows)
