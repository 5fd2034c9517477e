"""A published night, the workbench's users and signed-in HTTP clients, for the workbench's
tests and its benchmark."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import httpx

from lienwatch.night import Night
from lienwatch.settings import Settings
from lienwatch.workbench import auth, publish
from lienwatch.workbench import store as stored
from lienwatch.workbench.store import Store, open_store, store_url

PASSWORD = "correct horse battery staple"
USERS = {"analyst": "ann", "supervisor": "sam", "auditor": "aud", "admin": "ada"}
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def publish_night(db: Path, as_of: date, run_id: str, settings: Settings | None = None) -> Path:
    """Point the workbench at a night the review step has built a snapshot for."""
    night = Night(data=db.parent, db=db, out=db.parent / "out", as_of=as_of, run_id=run_id)
    published = publish.switch(night, settings or Settings())
    assert published is not None, "the review step built no snapshot"
    return published


def add_users(db: Path, settings: Settings | None = None, **extra: str) -> Store:
    """One user of each role (:data:`USERS`), and ``extra`` (name=role), all with
    :data:`PASSWORD`."""
    store = open_store(store_url(settings or Settings(), db))
    hashed = auth.hash_password(PASSWORD)
    for name, role in ({name: role for role, name in USERS.items()} | extra).items():
        stored.add_user(store, name, role, hashed)
    return store


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def sign_in(client: httpx.Client, username: str, password: str = PASSWORD) -> httpx.Response:
    token = csrf_of(client.get("/login").text)
    return client.post(
        "/login", data={"csrf": token, "username": username, "password": password, "next": "/"}
    )
