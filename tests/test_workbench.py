"""The analysts' workbench over HTTP: who may do what, sign-in, the audit log, concurrent
changes to one case, and the pages over a published night (the small warehouse of
tests/helpers.py, reviewed and published)."""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from lienwatch import warehouse
from lienwatch.errors import LienwatchError
from lienwatch.review import decisions
from lienwatch.settings import Settings, Workbench
from lienwatch.users_cli import users_app
from lienwatch.workbench import store as stored
from lienwatch.workbench.app import create_app
from lienwatch.workbench.store import StaleCase, open_store, store_url
from tests.helpers import HOSTILE, NIGHT, build_warehouse, run_review
from tests.served_app import serving
from tests.workbench_support import PASSWORD, USERS, add_users, csrf_of, publish_night, sign_in

LOAN = "LN000001"
LETTER = "L20261120-LN000001"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A warehouse whose night has been reviewed and published, and one user per role."""
    build_warehouse(tmp_path / "wh.duckdb", tmp_path / "out")
    con = warehouse.connect(tmp_path / "wh.duckdb")
    try:  # the two lists as the flags step makes them (transforms.flags.queue_order)
        con.execute(
            "UPDATE risk_flags SET queue = CASE WHEN days_past_due < 90 THEN 'early_outreach' ELSE 'default' END"
        )
        printed = con.execute(
            "SELECT pdf_path FROM letters WHERE letter_id = $id", {"id": LETTER}
        ).fetchall()[0][0]
    finally:
        con.close()
    Path(printed).parent.mkdir(parents=True, exist_ok=True)
    Path(printed).write_bytes(b"%PDF-1.4 a letter")
    run_review(tmp_path)
    publish_night(tmp_path / "wh.duckdb", NIGHT, f"review-{NIGHT}")
    add_users(tmp_path / "wh.duckdb")
    return tmp_path / "wh.duckdb"


def store_of(db: Path):
    return open_store(store_url(Settings(), db))


class Clients:
    """HTTP clients of one served workbench, closed at the end of the test."""

    def __init__(self, base: str, db: Path) -> None:
        self.base, self.db = base, db
        self.opened: list[httpx.Client] = []

    def anonymous(self) -> httpx.Client:
        client = httpx.Client(base_url=self.base, timeout=30)
        self.opened.append(client)
        return client

    def signed_in(self, username: str) -> httpx.Client:
        client = self.anonymous()
        assert sign_in(client, username).status_code == 303
        return client

    def close(self) -> None:
        for client in self.opened:
            client.close()


def served_clients(settings: Settings, db: Path) -> Iterator[Clients]:
    with serving(create_app(settings, db)) as base:
        clients = Clients(base, db)
        try:
            yield clients
        finally:
            clients.close()


@pytest.fixture
def web(db: Path) -> Iterator[Clients]:
    yield from served_clients(Settings(), db)


def form_token(client: httpx.Client, loan: str = LOAN) -> tuple[str, str]:
    """The CSRF token and case version on the loan's page."""
    page = client.get(f"/loans/{loan}")
    assert page.status_code == 200, page.text
    version = page.text.split('name="version" value="', 1)[1].split('"', 1)[0]
    return csrf_of(page.text), version


# --------------------------------------------------------------------------- authorisation

# Every route, the right it needs (lienwatch.workbench.auth.PERMISSIONS), and a request to
# make of it. The walk checks it covers every route the application has.
GETS = {
    "/queue": "read",
    f"/loans/{LOAN}": "read",
    f"/loans/{LOAN}/letters/{LETTER}": "read",
    "/calls": "read",
    "/mine": "read",
    "/portfolio": "read",
    "/workload": "workload",
    "/audit": "audit",
    "/audit.csv": "audit",
    "/users": "users",
}
POSTS = {
    "note": (f"/loans/{LOAN}/decisions", {"kind": "note", "note": "called"}, "decide"),
    "promise": (
        f"/loans/{LOAN}/decisions",
        {"kind": "promise", "date": "2099-01-01", "amount": "10.00"},
        "decide",
    ),
    "hold": (f"/loans/{LOAN}/decisions", {"kind": "hold"}, "hold"),
    "release": (f"/loans/{LOAN}/decisions", {"kind": "release"}, "release"),
    "assign": (f"/loans/{LOAN}/assign", {"to": "ann"}, "assign"),
}
RIGHTS = {
    "analyst": {"read", "decide", "hold"},
    "supervisor": {"read", "decide", "hold", "release", "assign", "workload"},
    "auditor": {"read", "workload", "audit"},
    "admin": {"users"},
}
BORROWER = ("Smith", "Garcia", LOAN)  # borrower names and the loan id of the test data


class TestAuthorisation:
    def test_the_walk_covers_every_route(self, db):
        """Each route of the application is in the walk (or is sign-in, sign-out, the home
        redirect or the static files)."""
        app = create_app(Settings(), db)
        paths = {route.path for route in app.routes}
        walked = {p.replace(LETTER, "{letter_id}").replace(LOAN, "{loan_id}") for p in GETS} | {
            p.replace(LOAN, "{loan_id}") for p, _, _ in POSTS.values()
        }
        assert paths - walked == {"/", "/login", "/logout", "/static"}

    def test_nothing_borrower_related_without_a_login(self, web):
        """Every page sends a visitor without a session to sign in, showing nothing; every
        POST is refused."""
        client = web.anonymous()
        for path in GETS:
            found = client.get(path)
            assert found.status_code == 303, path
            assert found.headers["location"].startswith("/login"), path
            assert not any(name in found.text for name in BORROWER), path
        for path, data, _ in POSTS.values():
            found = client.post(path, data=data)
            assert found.status_code == 401, path
            assert not any(name in found.text for name in BORROWER), path
        assert stored.decision_rows(store_of(web.db)) == []

    @pytest.mark.parametrize("role", list(USERS))
    def test_each_role_gets_its_rights_and_nothing_more(self, web, role):
        """A role's pages answer 200 and its changes are made; everything else is 403 with
        no borrower data on it."""
        client = web.signed_in(USERS[role])
        for path, right in GETS.items():
            found = client.get(path)
            if right in RIGHTS[role]:
                assert found.status_code == 200, (role, path)
            else:
                assert found.status_code == 403, (role, path)
                assert not any(name in found.text for name in BORROWER), (role, path)
        home = client.get("/queue" if "read" in RIGHTS[role] else "/users")
        token = csrf_of(home.text)
        for kind, (path, data, right) in POSTS.items():
            version = stored.case(store_of(web.db), LOAN)["version"]
            found = client.post(path, data={**data, "csrf": token, "version": str(version)})
            if right in RIGHTS[role]:
                assert found.status_code == 303, (role, kind, found.text)
            else:
                assert found.status_code == 403, (role, kind)
        made = {r["kind"] for r in stored.decision_rows(store_of(web.db))}
        assert made == {k for k, (_, _, right) in POSTS.items() if right in RIGHTS[role]} - {
            "assign"
        }

    @pytest.mark.parametrize("token", [None, "", "forged", "another-session"])
    def test_every_post_without_a_valid_csrf_token_is_refused(self, web, token):
        """Each POST, by a supervisor (who may make them all), without the session's token
        is refused and writes nothing; sign-in and sign-out too."""
        client = web.signed_in("sam")
        if token == "another-session":
            token = csrf_of(web.signed_in("ann").get("/queue").text)
        for path, data, _ in [*POSTS.values(), ("/logout", {}, "")]:
            sent = {**data, "version": "0"} | ({} if token is None else {"csrf": token})
            assert client.post(path, data=sent).status_code == 403, path
        assert stored.decision_rows(store_of(web.db)) == []
        assert stored.case(store_of(web.db), LOAN)["assigned_to"] is None
        assert client.get("/queue").status_code == 200  # still signed in
        fresh = web.anonymous()
        fresh.get("/login")
        sent = {"username": "ann", "password": PASSWORD} | (
            {} if token is None else {"csrf": token}
        )
        assert fresh.post("/login", data=sent).status_code == 403

    def test_a_letter_is_served_only_from_the_nights_output_and_logged(self, web):
        client = web.signed_in("ann")
        found = client.get(f"/loans/{LOAN}/letters/{LETTER}")
        assert found.status_code == 200 and found.content == b"%PDF-1.4 a letter"
        assert found.headers["content-type"] == "application/pdf"
        assert client.get(f"/loans/LN000002/letters/{LETTER}").status_code == 404  # not its loan
        assert client.get(f"/loans/{LOAN}/letters/..%2F..%2Fwh.duckdb").status_code == 404
        assert f'href="/loans/{LOAN}/letters/{LETTER}"' in client.get(f"/loans/{LOAN}").text
        actions = [r["action"] for r in stored.audit_rows(store_of(web.db), loan_id=LOAN)]
        assert "viewed letter" in actions

    def test_every_response_forbids_other_sites_content(self, web):
        client = web.signed_in("ann")
        for path in ["/login", "/queue", f"/loans/{LOAN}", "/static/workbench.css"]:
            headers = client.get(path).headers
            assert headers["content-security-policy"].startswith("default-src 'self'")
            assert headers["x-frame-options"] == "DENY"
        page = client.get(f"/loans/{LOAN}").text
        assert "<script" not in page  # no script at all: nothing inline to allow
        assert HOSTILE not in page and "&lt;/script&gt;" in client.get("/queue?q=LN000000").text


# --------------------------------------------------------------------------- signing in


class TestSignIn:
    def test_passwords_are_hashed_with_argon2id_at_64_mib(self):
        """The suite signs in with cheap hashes (tests/conftest.py); the workbench's own
        are argon2id with RFC 9106's low-memory profile, which this hash is made with."""
        from argon2 import PasswordHasher, Type

        from lienwatch.workbench.auth import PASSWORD_HASHING

        assert PASSWORD_HASHING.type is Type.ID
        assert (PASSWORD_HASHING.memory_cost, PASSWORD_HASHING.time_cost) == (65536, 3)
        made = PasswordHasher.from_parameters(PASSWORD_HASHING).hash("a good long password")
        assert made.startswith("$argon2id$v=19$m=65536,t=3,p=4$")

    def test_session_cookie_is_signed_httponly_strict_and_expires(self, db):
        settings = Settings(workbench=Workbench(session_minutes=30))
        for clients in served_clients(settings, db):
            client = clients.anonymous()
            cookies = sign_in(client, "ann").headers.get_list("set-cookie")
            cookie = next(c for c in cookies if c.startswith("lienwatch_session="))
            assert "HttpOnly" in cookie and "SameSite=strict" in cookie
            assert "Max-Age=1800" in cookie and "Secure" not in cookie
            value = client.cookies["lienwatch_session"]
            client.cookies.set("lienwatch_session", value[:-2] + "xx")
            assert client.get("/queue").status_code == 303  # tampered with: not a session

    def test_behind_tls_the_cookies_go_over_https_only(self, db):
        """With secure_cookies the browser keeps the sign-in form's cookie for HTTPS, so
        signing in over plain HTTP fails."""
        settings = Settings(workbench=Workbench(secure_cookies=True))
        for clients in served_clients(settings, db):
            client = clients.anonymous()
            cookie = client.get("/login").headers["set-cookie"]
            assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
            assert sign_in(client, "ann").status_code == 403

    def test_signing_out_ends_the_session_even_for_a_copied_cookie(self, web):
        client = web.signed_in("ann")
        copied = client.cookies["lienwatch_session"]
        token = csrf_of(client.get("/queue").text)
        assert client.post("/logout", data={"csrf": token}).status_code == 303
        other = web.anonymous()
        other.cookies.set("lienwatch_session", copied)
        assert other.get("/queue").status_code == 303

    def test_after_signing_in_only_a_page_of_this_site(self, web):
        client = web.anonymous()
        for target, landed in [
            ("/calls", "/calls"),
            ("//evil.example", "/"),
            ("/\\evil.example", "/"),
        ]:
            token = csrf_of(client.get("/login").text)
            found = client.post(
                "/login",
                data={"csrf": token, "username": "ann", "password": PASSWORD, "next": target},
            )
            assert found.headers["location"] == landed, target

    def test_wrong_passwords_lock_the_account(self, web):
        client = web.anonymous()
        for _ in range(5):
            assert sign_in(client, "ann", "not the password").status_code == 401
        locked = sign_in(client, "ann")
        assert locked.status_code == 423 and "locked" in locked.text
        assert sign_in(client, "sam").status_code == 303  # others unaffected

    def test_failures_from_one_address_are_throttled(self, web):
        client = web.anonymous()
        for n in range(20):
            assert sign_in(client, f"nobody{n}", "guess").status_code == 401
        assert sign_in(client, "sam").status_code == 429

    def test_disabling_or_a_new_role_ends_sessions(self, web):
        client = web.signed_in("ann")
        assert client.get("/queue").status_code == 200
        runner = CliRunner()
        done = runner.invoke(
            users_app, ["set-role", "ann", "--role", "auditor", "--db", str(web.db)]
        )
        assert done.exit_code == 0, done.output
        assert client.get("/queue").status_code == 303
        client = web.signed_in("ann")
        assert client.get("/audit").status_code == 200
        done = runner.invoke(users_app, ["disable", "ann", "--db", str(web.db)])
        assert done.exit_code == 0, done.output
        assert client.get("/queue").status_code == 303
        assert sign_in(web.anonymous(), "ann").status_code == 401

    def test_users_command_adds_and_resets(self, db):
        runner = CliRunner()
        args = ["--db", str(db), "--password-stdin"]
        done = runner.invoke(
            users_app, ["add", "zoe", "--role", "supervisor", *args], input="short\n"
        )
        assert done.exit_code == 2 and "at least 12" in done.output
        done = runner.invoke(
            users_app, ["add", "zoe", "--role", "boss", *args], input=PASSWORD + "\n"
        )
        assert done.exit_code == 2 and "unknown role" in done.output
        done = runner.invoke(
            users_app, ["add", "zoe", "--role", "supervisor", *args], input=PASSWORD + "\n"
        )
        assert done.exit_code == 0, done.output
        found = stored.user(store_of(db), "zoe")
        assert found["role"] == "supervisor" and found["password_hash"].startswith("$argon2id$")
        done = runner.invoke(
            users_app, ["reset-password", "zoe", *args], input="another good password\n"
        )
        assert done.exit_code == 0, done.output
        listed = runner.invoke(users_app, ["list", "--db", str(db)]).output
        assert "zoe\tsupervisor\tactive" in listed

    def test_proxy_sign_in_is_off_by_default_and_trusted_only_from_the_proxy(self, db):
        for clients in served_clients(Settings(), db):
            found = clients.anonymous().get("/queue", headers={"X-Remote-User": "ann"})
            assert found.status_code == 303
        settings = Settings(workbench=Workbench(proxy_user_header="X-Remote-User"))
        for clients in served_clients(settings, db):
            client = clients.anonymous()
            assert client.get("/queue", headers={"X-Remote-User": "ann"}).status_code == 200
            assert client.get("/queue", headers={"X-Remote-User": "mallory"}).status_code == 303
        settings = Settings(
            workbench=Workbench(proxy_user_header="X-Remote-User", trusted_proxies=("10.0.0.1",))
        )
        for clients in served_clients(settings, db):
            found = clients.anonymous().get("/queue", headers={"X-Remote-User": "ann"})
            assert found.status_code == 303


# --------------------------------------------------------------------------- audit


class TestAudit:
    def test_views_and_changes_are_logged_and_an_auditor_exports_them(self, web):
        ann = web.signed_in("ann")
        token, version = form_token(ann)
        ann.post(
            f"/loans/{LOAN}/decisions",
            data={"csrf": token, "version": version, "kind": "note", "note": "left a message"},
        )
        auditor = web.signed_in("aud")
        assert "view account" in auditor.get(f"/audit?loan={LOAN}").text
        export = auditor.get("/audit.csv")
        assert export.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(export.text)))
        mine = [(r["username"], r["action"], r["loan_id"]) for r in rows if r["username"] == "ann"]
        assert mine == [
            ("ann", "sign-in", ""),
            ("ann", "view account", LOAN),
            ("ann", "recorded note", LOAN),
        ]
        assert all(r["address"] == "127.0.0.1" and r["at_utc"] for r in rows)
        assert auditor.get("/audit").text.count("exported the audit log") == 1


# --------------------------------------------------------------------------- cases


class TestCases:
    def test_two_analysts_see_each_others_change_and_a_stale_form_is_refused(self, web):
        ann, sam = web.signed_in("ann"), web.signed_in("sam")
        ann_token, ann_version = form_token(ann)
        sam_token, sam_version = form_token(sam)
        assert ann_version == sam_version == "0"
        done = sam.post(
            f"/loans/{LOAN}/decisions",
            data={"csrf": sam_token, "version": sam_version, "kind": "note", "note": "sam called"},
        )
        assert done.status_code == 303
        stale = ann.post(
            f"/loans/{LOAN}/decisions",
            data={
                "csrf": ann_token,
                "version": ann_version,
                "kind": "promise",
                "date": "2099-01-01",
                "amount": "150.00",
            },
        )
        assert stale.status_code == 409
        assert "changed by someone else" in stale.text and "nothing was saved" in stale.text
        assert "sam called" in stale.text  # the refusal shows the case as it now is
        assert [r["kind"] for r in stored.decision_rows(store_of(web.db))] == ["note"]

    def test_store_refuses_a_stale_version_whatever_the_order(self, db):
        store = store_of(db)
        when = NIGHT + timedelta(days=1)
        first = stored.record(store, kind="note", loan_id=LOAN, made_by="a", made_at=when, version=0, note="x")  # fmt: skip
        assert first["version"] == 1
        with pytest.raises(StaleCase):
            stored.record(store, kind="note", loan_id=LOAN, made_by="b", made_at=when, version=0, note="y")  # fmt: skip
        with pytest.raises(StaleCase):
            stored.assign(store, LOAN, "ann", "sam", 0)
        assert stored.assign(store, LOAN, "ann", "sam", 1) == 2
        with pytest.raises(LienwatchError, match="not an active analyst or supervisor"):
            stored.assign(store, LOAN, "aud", "sam", 2)

    def test_of_many_writers_from_one_version_exactly_one_wins(self, db):
        """Eight threads record on one case from the same version at once: one decision
        is written, seven are refused as stale, none waits forever."""
        store = store_of(db)
        outcomes: list[str] = []

        def write(n: int) -> None:
            try:
                stored.record(
                    store,
                    kind="note",
                    loan_id=LOAN,
                    made_by=f"analyst{n}",
                    made_at=datetime(2026, 11, 20, 9, 0),
                    version=0,
                    note=f"note {n}",
                )
                outcomes.append("saved")
            except StaleCase:
                outcomes.append("stale")

        threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sorted(outcomes) == ["saved"] + ["stale"] * 7
        assert len(stored.decision_rows(store)) == 1
        assert stored.case(store, LOAN)["version"] == 1

    def test_a_refused_decision_says_why_and_writes_nothing(self, web):
        ann = web.signed_in("ann")
        token, version = form_token(ann)
        for data, message in [
            ({"kind": "promise", "date": "2020-01-01", "amount": "5"}, "before the promise"),
            ({"kind": "promise", "date": "2099-01-01", "amount": "-5"}, "a positive amount"),
            ({"kind": "note", "note": " "}, "a note needs"),
            ({"kind": "hold", "letter_id": "L20261120-LN000002"}, "is a letter of loan"),
            ({"kind": "contact", "outcome": "maybe"}, "outcome"),
        ]:
            found = ann.post(
                f"/loans/{LOAN}/decisions", data={**data, "csrf": token, "version": version}
            )
            assert found.status_code == 400 and message in found.text, data
        assert stored.decision_rows(store_of(web.db)) == []

    def test_the_review_command_writes_to_the_same_store(self, web):
        done = CliRunner().invoke(
            decisions_cli(),
            [
                "note",
                "--loan",
                LOAN,
                "--note",
                "from the shell",
                "--db",
                str(web.db),
                "--by",
                "ann",
            ],
        )
        assert done.exit_code == 0, done.output
        assert "from the shell" in web.signed_in("sam").get(f"/loans/{LOAN}").text


def decisions_cli():
    from lienwatch.review_cli import review_app

    return review_app


# --------------------------------------------------------------------------- pages


class TestPages:
    def test_queue_filters_searches_sorts_and_pages_on_the_server(self, web):
        client = web.signed_in("ann")
        everything = client.get("/queue").text
        assert "of 8 matching loans" in everything
        early = client.get("/queue?queue=early_outreach").text
        default = client.get("/queue?queue=default").text
        count = lambda text: int(text.split("Showing", 1)[1].split(" of ", 1)[1].split(" ")[0])  # noqa: E731
        assert count(early) + count(default) == 8
        one = client.get("/queue?q=garcia").text
        assert count(one) >= 1 and "Garcia" in one
        assert count(client.get("/queue?tier=no-such-tier").text) == 8  # ignored, not an error
        ordered = client.get("/queue?sort=dpd&dir=desc").text
        days = [int(c.split("</td>")[0]) for c in ordered.split('<td class="dpd">')[1:]]
        assert days == sorted(days, reverse=True) and len(days) == 8
        assert count(client.get("/queue?page=2").text) == 8
        assert client.get("/queue?page=2").text.count('<td class="dpd">') == 0  # all on page 1

    def test_recording_a_contact_attempt_takes_the_loan_off_the_call_list(self, web):
        client = web.signed_in("ann")
        calls = client.get("/calls").text
        due = calls.split("/loans/")[1].split('"')[0]
        token, version = form_token(client, due)
        client.post(
            f"/loans/{due}/decisions",
            data={"csrf": token, "version": version, "kind": "contact", "outcome": "no answer"},
        )
        assert f'/loans/{due}"' not in client.get("/calls").text

    def test_a_supervisor_assigns_and_the_analyst_sees_it_under_my_cases(self, web):
        sam, ann = web.signed_in("sam"), web.signed_in("ann")
        assert LOAN not in ann.get("/mine").text
        token, version = form_token(sam)
        done = sam.post(
            f"/loans/{LOAN}/assign", data={"csrf": token, "version": version, "to": "ann"}
        )
        assert done.status_code == 303
        assert f"/loans/{LOAN}" in ann.get("/mine").text
        workload = sam.get("/workload").text
        assert "<td>ann</td><td>analyst</td><td>1</td>" in workload

    def test_portfolio_shows_the_nights_figures(self, web):
        page = web.signed_in("ann").get("/portfolio").text
        assert "Portfolio on the night of 2026-11-20" in page
        assert "Flagged second liens by tier" in page and "Roll rates" in page

    def test_before_any_night_completes_the_pages_say_so(self, tmp_path):
        build_warehouse(tmp_path / "wh.duckdb", tmp_path / "out")
        add_users(tmp_path / "wh.duckdb")
        for clients in served_clients(Settings(), tmp_path / "wh.duckdb"):
            found = clients.signed_in("ann").get("/queue")
            assert found.status_code == 503 and "No night has completed yet" in found.text


class TestNightTakesDecisionsIn:
    def test_decisions_recorded_in_the_workbench_act_on_the_next_night(self, web):
        """A hold and an application recorded in the workbench reach the warehouse when the
        next night takes them in, and act from that night."""
        ann = web.signed_in("ann")
        for data in ({"kind": "hold", "note": "disputes"}, {"kind": "application"}):
            token, version = form_token(ann)
            found = ann.post(
                f"/loans/{LOAN}/decisions", data={**data, "csrf": token, "version": version}
            )
            assert found.status_code == 303
        con = warehouse.connect(web.db)
        try:
            assert decisions.take_in(con, store_of(web.db)) == 2
            assert decisions.take_in(con, store_of(web.db)) == 0  # once only
            tomorrow = date.today() + timedelta(days=1)
            assert decisions.holds_as_of(con, tomorrow)["loan_id"].to_list() == [LOAN]
            assert decisions.application_cases(con, tomorrow)["loan_id"].to_list() == [LOAN]
        finally:
            con.close()
