"""The workbench store: decisions, case versions and assignments, users, the audit log.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "decisions",
        sa.Column("decision_id", sa.String(40), primary_key=True),
        sa.Column("loan_id", sa.String(64), nullable=False, index=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("made_at", sa.DateTime(), nullable=False),
        sa.Column("made_by", sa.String(128), nullable=False),
        sa.Column("promise_date", sa.Date()),
        sa.Column("promise_cents", sa.BigInteger()),
        sa.Column("letter_id", sa.String(128)),
        sa.Column("outcome", sa.String(32)),
        sa.Column("note", sa.Text()),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "cases",
        sa.Column("loan_id", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("assigned_to", sa.String(128), index=True),
        sa.Column("assigned_by", sa.String(128)),
        sa.Column("assigned_at", sa.DateTime()),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("username", sa.String(128), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(256)),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime()),
        sa.Column("session_epoch", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "audit",
        sa.Column("audit_id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(), nullable=False, index=True),
        sa.Column("username", sa.String(128)),
        sa.Column("address", sa.String(64)),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("loan_id", sa.String(64), index=True),
        sa.Column("detail", sa.Text()),
    )
    op.create_table(
        "settings",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    for table in ("settings", "audit", "users", "cases", "decisions"):
        op.drop_table(table)
