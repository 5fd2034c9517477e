"""The workbench store: analysts' decisions, the cases' versions and assignments, users and
the audit log, in a transactional database of its own (SQLite in WAL mode by default,
PostgreSQL for a team), so that recording a decision never waits for the night, which
holds the warehouse's write lock. The night takes the decisions in at its start
(:func:`lienwatch.review.decisions.take_in`).

Each case (one per loan) has a version that every change raises: a form carries the
version it was drawn from, and a change made from an older one is refused
(:class:`StaleCase`), never written over a colleague's.
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection, Engine

from lienwatch.errors import LienwatchError
from lienwatch.settings import Settings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
STORE_FILE = "workbench.sqlite"
ROLES = ("analyst", "supervisor", "auditor", "admin")
TABLES = ("decisions", "cases", "users", "audit", "settings")  # the schema: migrations/


class StaleCase(LienwatchError):
    """The case changed since the form was drawn: nothing was written."""


def utc_now() -> datetime:
    """Now in UTC, naive: the store's own times (a decision's made_at is the schedule's)."""
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


@dataclass(frozen=True)
class Store:
    """An open store: its engine and its tables, as its migrations made them."""

    engine: Engine
    decisions: sa.Table
    cases: sa.Table
    users: sa.Table
    audit: sa.Table
    settings: sa.Table

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One all-or-nothing write, holding SQLite's write lock from its start (a read that
        later writes would otherwise fail at once instead of waiting its turn)."""
        with self.engine.connect() as con:
            con.execution_options(immediate=True)
            with con.begin():
                yield con

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as con, con.begin():
            yield con


def store_url(settings: Settings, db: Path) -> str:
    """The store's URL: ``workbench.database_url``, else the SQLite file beside ``db``."""
    if settings.workbench.database_url:
        return settings.workbench.database_url
    return f"sqlite:///{(db.parent / STORE_FILE).resolve()}"


_OPEN: dict[str, Store] = {}
_OPENING = threading.Lock()


def open_store(url: str) -> Store:
    """The store at ``url``, created or brought up to date by its migrations (once per
    process)."""
    with _OPENING:
        if url in _OPEN:
            return _OPEN[url]
        engine = _engine(url)
        with engine.connect() as con:
            con.execution_options(immediate=True)
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = con
            command.upgrade(config, "head")
            con.commit()
        tables = sa.MetaData()
        tables.reflect(engine, only=TABLES)
        _OPEN[url] = store = Store(engine, *(tables.tables[name] for name in TABLES))
        return store


def close_stores() -> None:
    """Dispose of every store this process opened (tests, and the server's shutdown)."""
    with _OPENING:
        for store in _OPEN.values():
            store.engine.dispose()
        _OPEN.clear()


def _engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_pre_ping=True)
    path = sa.make_url(url).database
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        Path(path).touch(mode=0o600, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver's own transaction handling is off: the begin below says when, and how.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(con: Connection) -> None:
        immediate = con.get_execution_options().get("immediate")
        con.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


# --------------------------------------------------------------------------- decisions


def record(
    store: Store,
    *,
    kind: str,
    loan_id: str,
    made_by: str,
    made_at: datetime,
    version: int | None = None,
    promise_date: date | None = None,
    promise_cents: int | None = None,
    letter_id: str | None = None,
    outcome: str | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """Write one decision and raise its case's version, in one transaction.

    With ``version`` (the case's version the form was drawn from) a case changed since is
    refused with :class:`StaleCase`; without (the command line), the decision is added to
    whatever the case holds. Returns the row written, with the case's new version.
    """
    row = {
        "decision_id": f"D{made_at:%Y%m%d%H%M%S}-{uuid.uuid4().hex[:8]}",
        "loan_id": loan_id,
        "kind": kind,
        "made_at": made_at,
        "made_by": made_by,
        "promise_date": promise_date,
        "promise_cents": promise_cents,
        "letter_id": letter_id,
        "outcome": outcome,
        "note": note,
        "recorded_at": utc_now(),
    }
    with store.write() as con:
        row["version"] = _bump(store, con, loan_id, version)
        con.execute(
            store.decisions.insert().values({k: v for k, v in row.items() if k != "version"})
        )
    return row


def _bump(store: Store, con: Connection, loan_id: str, version: int | None, **values: Any) -> int:
    """Raise the case's version (creating the case at version 1); refuse a stale one.

    The write itself is conditional on the version read (and a new case on its key), so
    two writers that read the same version cannot both succeed, whatever the database's
    isolation."""
    now = utc_now()
    cases = store.cases
    current = con.execute(
        sa.select(cases.c.version).where(cases.c.loan_id == loan_id)
    ).scalar_one_or_none()
    stale = StaleCase(
        f"loan {loan_id} was changed by someone else since this page was opened "
        f"(version {current or 0}, the form's {version}); nothing was saved: look at "
        "the case again and redo the change if it still stands"
    )
    if version is not None and (current or 0) != version:
        raise stale
    if current is None:
        try:
            con.execute(cases.insert().values(loan_id=loan_id, version=1, changed_at=now, **values))
        except sa.exc.IntegrityError:
            raise stale from None
        return 1
    done = con.execute(
        cases.update()
        .where(cases.c.loan_id == loan_id, cases.c.version == current)
        .values(version=current + 1, changed_at=now, **values)
    )
    if done.rowcount != 1:
        raise stale
    return current + 1


def decision_rows(store: Store, loan_id: str | None = None) -> list[dict[str, Any]]:
    """Decisions, oldest first (one loan's, or all)."""
    query = sa.select(store.decisions).order_by(
        store.decisions.c.made_at, store.decisions.c.decision_id
    )
    if loan_id is not None:
        query = query.where(store.decisions.c.loan_id == loan_id)
    with store.read() as con:
        return [dict(r._mapping) for r in con.execute(query)]


def case(store: Store, loan_id: str) -> dict[str, Any]:
    """The case's version and assignment (version 0 for a loan nobody has touched)."""
    with store.read() as con:
        found = con.execute(sa.select(store.cases).where(store.cases.c.loan_id == loan_id)).first()
    if found is None:
        return {"loan_id": loan_id, "version": 0, "assigned_to": None, "assigned_by": None}
    return dict(found._mapping)


def assign(store: Store, loan_id: str, to: str | None, by: str, version: int | None) -> int:
    """Assign the case to ``to`` (None: unassign); refuse a stale form. Returns the version."""
    with store.write() as con:
        if to is not None:
            found = con.execute(
                sa.select(store.users.c.role).where(
                    store.users.c.username == to, store.users.c.active
                )
            ).scalar_one_or_none()
            if found not in ("analyst", "supervisor"):
                raise LienwatchError(f"{to}: not an active analyst or supervisor")
        return _bump(
            store, con, loan_id, version, assigned_to=to, assigned_by=by, assigned_at=utc_now()
        )


def assigned(store: Store, username: str) -> list[dict[str, Any]]:
    query = (
        sa.select(store.cases)
        .where(store.cases.c.assigned_to == username)
        .order_by(store.cases.c.assigned_at.desc(), store.cases.c.loan_id)
    )
    with store.read() as con:
        return [dict(r._mapping) for r in con.execute(query)]


def assignments(store: Store, loan_ids: list[str]) -> dict[str, str]:
    """Who each of ``loan_ids`` is assigned to (those assigned)."""
    if not loan_ids:
        return {}
    query = sa.select(store.cases.c.loan_id, store.cases.c.assigned_to).where(
        store.cases.c.loan_id.in_(loan_ids), store.cases.c.assigned_to.is_not(None)
    )
    with store.read() as con:
        return {r[0]: r[1] for r in con.execute(query)}


def contacted_since(store: Store, since: datetime) -> set[str]:
    """Loans with a contact attempt made at or after ``since`` (the schedule's clock)."""
    query = sa.select(store.decisions.c.loan_id).where(
        store.decisions.c.kind == "contact", store.decisions.c.made_at >= since
    )
    with store.read() as con:
        return {r[0] for r in con.execute(query)}


def workload(store: Store, today_from: datetime) -> list[dict[str, Any]]:
    """Per user: cases assigned, and decisions recorded since ``today_from`` (UTC)."""
    with store.read() as con:
        held: dict[str, int] = {
            r[0]: r[1]
            for r in con.execute(
                sa.select(store.cases.c.assigned_to, sa.func.count())
                .where(store.cases.c.assigned_to.is_not(None))
                .group_by(store.cases.c.assigned_to)
            ).all()
        }
        done: dict[str, int] = {
            r[0]: r[1]
            for r in con.execute(
                sa.select(store.decisions.c.made_by, sa.func.count())
                .where(store.decisions.c.recorded_at >= today_from)
                .group_by(store.decisions.c.made_by)
            ).all()
        }
        people = con.execute(
            sa.select(store.users.c.username, store.users.c.role)
            .where(store.users.c.active, store.users.c.role.in_(("analyst", "supervisor")))
            .order_by(store.users.c.username)
        ).all()
    return [
        {"username": u, "role": r, "assigned": held.get(u, 0), "decisions_today": done.get(u, 0)}
        for u, r in people
    ]


# --------------------------------------------------------------------------- users


def user(store: Store, username: str) -> dict[str, Any] | None:
    with store.read() as con:
        found = con.execute(
            sa.select(store.users).where(store.users.c.username == username)
        ).first()
    return None if found is None else dict(found._mapping)


def all_users(store: Store) -> list[dict[str, Any]]:
    with store.read() as con:
        return [
            dict(r._mapping)
            for r in con.execute(sa.select(store.users).order_by(store.users.c.username))
        ]


def add_user(store: Store, username: str, role: str, password_hash: str | None) -> None:
    check_role(role)
    if not username.strip() or username != username.strip():
        raise LienwatchError(f"{username!r}: a user name without surrounding spaces")
    with store.write() as con:
        if con.execute(
            sa.select(store.users.c.username).where(store.users.c.username == username)
        ).first():
            raise LienwatchError(f"{username}: already a user")
        con.execute(
            store.users.insert().values(
                username=username,
                role=role,
                password_hash=password_hash,
                active=True,
                failed_logins=0,
                session_epoch=0,
                created_at=utc_now(),
            )
        )


def check_role(role: str) -> None:
    if role not in ROLES:
        raise LienwatchError(f"unknown role {role!r}; one of {', '.join(ROLES)}")


def change_user(store: Store, username: str, **values: Any) -> None:
    """Change a user; every change also ends the user's sessions (a new session epoch)."""
    with store.write() as con:
        done = con.execute(
            store.users.update()
            .where(store.users.c.username == username)
            .values(session_epoch=store.users.c.session_epoch + 1, **values)
        )
        if not done.rowcount:
            raise LienwatchError(f"{username}: no such user")


def login_failed(store: Store, username: str, limit: int, lockout: timedelta) -> None:
    """Count a failed sign-in; at ``limit`` in a row the account locks for ``lockout``."""
    with store.write() as con:
        found = con.execute(
            sa.select(store.users.c.failed_logins).where(store.users.c.username == username)
        ).scalar_one_or_none()
        if found is None:
            return
        values: dict[str, Any] = {"failed_logins": found + 1}
        if found + 1 >= limit:
            values = {"failed_logins": 0, "locked_until": utc_now() + lockout}
        con.execute(store.users.update().where(store.users.c.username == username).values(**values))


def login_succeeded(store: Store, username: str) -> None:
    with store.write() as con:
        con.execute(
            store.users.update()
            .where(store.users.c.username == username)
            .values(failed_logins=0, locked_until=None)
        )


def secret_key(store: Store) -> str:
    """The key that signs session cookies: made once, kept in the store."""
    with store.write() as con:
        found = con.execute(
            sa.select(store.settings.c.value).where(store.settings.c.key == "session_key")
        ).scalar_one_or_none()
        if found is None:
            found = secrets.token_urlsafe(48)
            con.execute(store.settings.insert().values(key="session_key", value=found))
    return found


# --------------------------------------------------------------------------- audit


def audit_event(
    store: Store,
    *,
    username: str | None,
    address: str | None,
    action: str,
    loan_id: str | None = None,
    detail: str | None = None,
) -> None:
    """One line of the audit log: who, when (UTC), what, from where."""
    with store.write() as con:
        con.execute(
            store.audit.insert().values(
                at=utc_now(),
                username=username,
                address=address,
                action=action,
                loan_id=loan_id,
                detail=detail,
            )
        )


def audit_rows(
    store: Store, *, limit: int | None = None, offset: int = 0, loan_id: str | None = None
) -> list[dict[str, Any]]:
    """The audit log, newest first."""
    query = sa.select(store.audit).order_by(store.audit.c.audit_id.desc()).offset(offset)
    if loan_id:
        query = query.where(store.audit.c.loan_id == loan_id)
    if limit is not None:
        query = query.limit(limit)
    with store.read() as con:
        return [dict(r._mapping) for r in con.execute(query)]
