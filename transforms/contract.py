"""The data contract's closed vocabularies and feed layouts, defined once.

Everything that names a feed, a column, an allowed value, a bucket or a tier reads it
from here: the readers, the expectation suites, the transforms, the generator and the
docs. The meanings are those of ``docs/contract.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# ---------------------------------------------------------------------------
# Allowed values
# ---------------------------------------------------------------------------
LIEN_POSITIONS = (1, 2)
PRODUCTS = ("closed_end", "heloc")
OCCUPANCIES = ("primary", "second_home", "investment")
LOAN_STATUSES = ("active", "paid_off", "charged_off", "foreclosure", "transferred")
LANGUAGES = ("en", "es")
TXN_TYPES = ("payment", "reversal")
# payment_deferral is accepted beyond the contract's four, so the deferral rule can see past deferrals.
LOSS_MIT_CASE_TYPES = (
    "forbearance",
    "repayment_plan",
    "trial_modification",
    "application",
    "payment_deferral",
)
LOSS_MIT_STATUSES = ("open", "closed")

# Buckets in order of severity, with their inclusive lower bound in days past due.
BUCKETS = ("current", "1-29", "30-59", "60-89", "90-119", "120-179", "180+")
BUCKET_LOWER_DAYS = (0, 1, 30, 60, 90, 120, 180)
DEFAULT_DAYS = 90

TIERS = ("early_warning", "delinquent", "imminent_default", "default")

# Early-warning signals (reason codes), in the order they are listed to an analyst.
SIGNALS = (
    "senior_lien_delinquent",
    "returned_payment",
    "partial_or_suspense",
    "payment_shock",
    "paying_later",
    "underwater",
    "worsening_bucket",
    "early_delinquency",
    "past_delinquency",  # the model's: behind at recent month ends (no rule raises it)
)
# Loans that need care: flagged for review, and they shape (or stop) outreach.
CARE_FLAGS = (
    "bankruptcy",
    "deceased",
    "cease_communication",
    "open_loss_mitigation",
    "not_principal_residence",
)

LETTER_TEMPLATES = (
    "early_intervention",
    "early_intervention_bankruptcy",
    "early_intervention_cease",
    "heloc_counseling",
    "early_warning",
    "imminent_default",
)
LETTER_STATUSES = ("generated", "suppressed")

Kind = Literal["text", "int", "money", "rate", "date", "bool"]


@dataclass(frozen=True)
class Column:
    """One column of a landing feed."""

    name: str
    kind: Kind
    required: bool = True  # the column must be present in the file
    nullable: bool = False  # an empty value is allowed
    allowed: tuple[str | int, ...] | None = None


@dataclass(frozen=True)
class Feed:
    """One landing feed: where it lives, whether it must be there, its columns and key."""

    name: str
    required: bool
    snapshot: bool  # a full snapshot that replaces the previous one (else an append-only ledger)
    key: tuple[str, ...]
    columns: tuple[Column, ...]

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def required_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


LOANS = Feed(
    name="loans",
    required=True,
    snapshot=True,
    key=("loan_id",),
    columns=(
        Column("loan_id", "text"),
        Column("borrower_id", "text"),
        Column("lien_position", "int", allowed=LIEN_POSITIONS),
        Column("product", "text", allowed=PRODUCTS),
        Column("origination_date", "date"),
        Column("first_payment_date", "date"),
        Column("scheduled_payment", "money"),
        Column("term_months", "int"),
        Column("interest_rate", "rate"),
        Column("original_balance", "money"),
        Column("current_balance", "money"),
        Column("property_state", "text"),
        Column("occupancy", "text", allowed=OCCUPANCIES),
        Column("property_value", "money", required=False, nullable=True),
        Column("senior_lien_balance", "money", required=False, nullable=True),
        Column("draw_period_end", "date", required=False, nullable=True),
        Column("status", "text", allowed=LOAN_STATUSES),
        # the servicing was taken over after the loan was in default: the servicer is a debt
        # collector for it under the FDCPA (15 U.S.C. 1692a(6)(F)(iii)); empty means no
        Column("acquired_in_default", "bool", required=False, nullable=True),
    ),
)

BORROWERS = Feed(
    name="borrowers",
    required=True,
    snapshot=True,
    key=("borrower_id",),
    columns=(
        Column("borrower_id", "text"),
        Column("first_name", "text"),
        Column("last_name", "text"),
        Column("address_line1", "text"),
        Column("address_line2", "text", required=False, nullable=True),
        Column("city", "text"),
        Column("state", "text"),
        Column("zip", "text"),
        Column("preferred_language", "text", allowed=LANGUAGES),
        Column("email", "text", required=False, nullable=True),
        Column("phone", "text", required=False, nullable=True),
        Column("bankruptcy", "bool"),
        Column("cease_communication", "bool"),
        Column("deceased", "bool"),
        Column("bankruptcy_filed_date", "date", required=False, nullable=True),
    ),
)

PAYMENTS = Feed(
    name="payments",
    required=True,
    snapshot=False,
    key=("txn_id",),
    columns=(
        Column("txn_id", "text"),
        Column("loan_id", "text"),
        Column("posted_date", "date"),
        Column("amount", "money"),
        Column("txn_type", "text", allowed=TXN_TYPES),
        Column("reverses_txn_id", "text", required=False, nullable=True),
        Column("return_reason", "text", required=False, nullable=True),
    ),
)

PAYMENT_CHANGES = Feed(
    name="payment_changes",
    required=False,
    snapshot=True,
    key=("loan_id", "effective_due_date"),
    columns=(
        Column("loan_id", "text"),
        Column("effective_due_date", "date"),
        Column("scheduled_payment", "money"),
    ),
)

SENIOR_LIENS = Feed(
    name="senior_liens",
    required=False,
    snapshot=True,
    key=("loan_id", "reported_date"),
    columns=(
        Column("loan_id", "text"),
        Column("reported_date", "date"),
        Column("senior_days_past_due", "int"),
    ),
)

LOSS_MIT = Feed(
    name="loss_mit",
    required=False,
    snapshot=True,
    key=("loan_id", "case_type", "opened_date"),
    columns=(
        Column("loan_id", "text"),
        Column("case_type", "text", allowed=LOSS_MIT_CASE_TYPES),
        Column("status", "text", allowed=LOSS_MIT_STATUSES),
        Column("opened_date", "date"),
        Column("closed_date", "date", required=False, nullable=True),
    ),
)

# Letters sent before lienwatch (go-live): with them the cadence rules hold from the first
# night. A servicer that loads the file, even with no rows, says its history is known.
LETTER_HISTORY = Feed(
    name="letter_history",
    required=False,
    snapshot=True,
    key=("loan_id", "template", "sent_date"),
    columns=(
        Column("loan_id", "text"),
        Column("template", "text", allowed=LETTER_TEMPLATES),
        Column("sent_date", "date"),
        Column("borrower_id", "text", required=False, nullable=True),
    ),
)

FEEDS: dict[str, Feed] = {
    f.name: f
    for f in (
        LOANS,
        BORROWERS,
        PAYMENTS,
        PAYMENT_CHANGES,
        SENIOR_LIENS,
        LOSS_MIT,
        LETTER_HISTORY,
    )
}
SNAPSHOT_FEEDS = tuple(f.name for f in FEEDS.values() if f.snapshot)
