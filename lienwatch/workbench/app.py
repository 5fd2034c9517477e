"""The workbench's web application (Starlette, server-rendered jinja2 pages, plain forms).

Every page but the sign-in needs a session, and every route names the right it needs
(:data:`lienwatch.workbench.auth.PERMISSIONS`); every POST carries the session's CSRF
token. Borrower pages read the published night (:mod:`lienwatch.workbench.views`) and
the store; each view of an account and each change goes to the audit log.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote
from zoneinfo import ZoneInfo

import jinja2
import polars as pl
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lienwatch.errors import LienwatchError
from lienwatch.letters import TEMPLATES
from lienwatch.review import decisions as night_decisions
from lienwatch.settings import Settings
from lienwatch.workbench import auth, views
from lienwatch.workbench import store as stored
from lienwatch.workbench.snapshot import snapshot_dir
from lienwatch.workbench.store import StaleCase, open_store, store_url
from transforms import cases
from transforms.review import decision_text

STATIC = Path(__file__).resolve().parent / "static"
OUTCOMES = ("reached", "no answer", "left voicemail", "wrong number", "refused to talk")
MAX_FORM_BYTES = 64 * 1024
AUDIT_ROWS = 100
HEADERS = {
    "content-security-policy": "default-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


class SecurityHeaders:
    """The same strict headers on every response: nothing but this site's own files, no
    framing, no caching of borrower data."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with)


@dataclass
class Visit:
    """One request, and who makes it."""

    request: Request
    address: str
    form: dict[str, str] = field(default_factory=dict)
    user: dict[str, Any] | None = None
    session: auth.Session | None = None
    new_cookie: str | None = None

    @property
    def username(self) -> str:
        return self.user["username"] if self.user else ""

    def can(self, permission: str) -> bool:
        return self.user is not None and auth.can(self.user["role"], permission)


Handler = Callable[[Visit], Response]


class Workbench:
    def __init__(
        self, settings: Settings, db: Path, now: Callable[[], datetime] | None = None
    ) -> None:
        self.settings = settings
        self.config = settings.workbench
        self.store = open_store(store_url(settings, db))
        self.published = views.Published(snapshot_dir(settings, db))
        self.sessions = auth.Sessions(
            stored.secret_key(self.store), self.config.session_minutes * 60
        )
        self.throttle = auth.Throttle()
        self.clock = ZoneInfo(settings.schedule.timezone)
        self.now = now
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES / "workbench"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["cents"] = lambda v: "" if v is None else f"${v:,.2f}"
        self.env.filters["dollars"] = lambda v: "" if v is None else f"${v:,.0f}"

    # ------------------------------------------------------------------ plumbing

    def routes(self) -> list[Route | Mount]:
        guarded: list[tuple[str, str, str, Handler]] = [
            ("/", "GET", "", self.home),
            ("/queue", "GET", "read", self.queue),
            ("/loans/{loan_id}", "GET", "read", self.account),
            ("/loans/{loan_id}/letters/{letter_id}", "GET", "read", self.letter),
            ("/loans/{loan_id}/decisions", "POST", "decide", self.decide),
            ("/loans/{loan_id}/assign", "POST", "assign", self.assign),
            ("/calls", "GET", "read", self.calls),
            ("/mine", "GET", "read", self.mine),
            ("/workload", "GET", "workload", self.workload),
            ("/portfolio", "GET", "read", self.portfolio),
            ("/audit", "GET", "audit", self.audit),
            ("/audit.csv", "GET", "audit", self.audit_csv),
            ("/users", "GET", "users", self.users),
            ("/logout", "POST", "", self.logout),
        ]
        return [
            Route("/login", self.login_page, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            *(
                Route(path, self._guard(handler, permission), methods=[method])
                for path, method, permission, handler in guarded
            ),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]

    def _address(self, request: Request) -> str:
        """The client's address; behind a trusted proxy, the last one it forwarded for."""
        peer = request.client.host if request.client else "unknown"
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded and peer in self.config.trusted_proxies:
            return forwarded.split(",")[-1].strip() or peer
        return peer

    async def _visit(self, request: Request) -> Visit:
        visit = Visit(request, self._address(request))
        if request.method == "POST":
            body = await request.body()
            if len(body) <= MAX_FORM_BYTES:
                visit.form = dict(parse_qsl(body.decode("utf-8", "replace"), max_num_fields=50))
        return visit

    def _sign_in_visit(self, visit: Visit) -> None:
        """Who the visit is: a valid session of an active user, or the user a trusted proxy
        names (single sign-on, when configured; the proxy's word wins over a session)."""
        header = self.config.proxy_user_header
        peer = visit.request.client.host if visit.request.client else ""
        named = None
        if header and peer in self.config.trusted_proxies:
            named = visit.request.headers.get(header, "").strip() or None
        session = self.sessions.read(visit.request.cookies.get(auth.SESSION_COOKIE))
        if session is not None and named in (None, session.username):
            found = stored.user(self.store, session.username)
            if found and found["active"] and found["session_epoch"] == session.epoch:
                visit.user, visit.session = found, session
                return
        found = stored.user(self.store, named) if named else None
        if found and found["active"]:
            visit.new_cookie, visit.session = self.sessions.issue(
                found["username"], found["session_epoch"]
            )
            visit.user = found
            self._audit(visit, "sign-in", detail=f"by the proxy's {header} header")

    def _guard(self, handler: Handler, permission: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            visit = await self._visit(request)
            return await run_in_threadpool(self._checked, handler, permission, visit)

        return endpoint

    def _checked(self, handler: Handler, permission: str, visit: Visit) -> Response:
        self._sign_in_visit(visit)
        request = visit.request
        if visit.user is None or visit.session is None:
            if request.method == "GET":
                return RedirectResponse("/login?next=" + quote(request.url.path), 303)
            return self._message(visit, 401, "Sign in first.")
        if permission and not visit.can(permission):
            self._audit(visit, "refused", detail=f"{request.method} {request.url.path}")
            return self._message(visit, 403, "Your role does not allow this.")
        if request.method == "POST" and not auth.same(visit.form.get("csrf"), visit.session.csrf):
            return self._message(
                visit, 403, "This form has expired or did not come from this site. Reload it."
            )
        response = handler(visit)
        if visit.new_cookie:
            self._set_session(response, visit.new_cookie)
        return response

    def _set_session(self, response: Response, cookie: str) -> None:
        response.set_cookie(
            auth.SESSION_COOKIE,
            cookie,
            **auth.cookie_options(self.config.secure_cookies, self.sessions.max_age),
        )

    def _render(self, visit: Visit, template: str, status: int = 200, **context: Any) -> Response:
        night = self.published.night()
        html = self.env.get_template(template).render(
            user=visit.user,
            csrf=visit.session.csrf if visit.session else "",
            can=visit.can,
            night=night,
            team=self.settings.servicer.team_name,
            **context,
        )
        return HTMLResponse(html, status_code=status)

    def _message(self, visit: Visit, status: int, text: str) -> Response:
        return self._render(visit, "message.html.j2", status, message=text)

    def _audit(
        self, visit: Visit, action: str, loan_id: str | None = None, detail: str | None = None
    ) -> None:
        stored.audit_event(
            self.store,
            username=visit.username or visit.form.get("username") or None,
            address=visit.address,
            action=action,
            loan_id=loan_id,
            detail=detail,
        )

    def _now(self) -> datetime:
        """Now on the schedule's clock: the business day a decision acts from."""
        if self.now is not None:
            return self.now()
        return datetime.now(self.clock).replace(tzinfo=None, microsecond=0)

    def _night_or_message(self, visit: Visit) -> views.Night | Response:
        night = self.published.night()
        if night is None:
            return self._message(visit, 503, "No night has completed yet: nothing to show.")
        return night

    # ------------------------------------------------------------------ signing in

    async def login_page(self, request: Request) -> Response:
        return await run_in_threadpool(self._login_form, Visit(request, self._address(request)))

    def _login_form(self, visit: Visit, status: int = 200, error: str = "") -> Response:
        token, cookie = self.sessions.login_token()
        nxt = visit.request.query_params.get("next") or visit.form.get("next") or "/"
        response = self._render(
            visit, "login.html.j2", status, token=token, error=error, next=_local(nxt)
        )
        response.set_cookie(
            auth.LOGIN_COOKIE, cookie, **auth.cookie_options(self.config.secure_cookies, 3600)
        )
        return response

    async def login(self, request: Request) -> Response:
        visit = await self._visit(request)
        return await run_in_threadpool(self._login, visit)

    def _login(self, visit: Visit) -> Response:
        form = visit.form
        if not self.sessions.login_token_valid(
            visit.request.cookies.get(auth.LOGIN_COOKIE), form.get("csrf")
        ):
            return self._login_form(visit, 403, "The sign-in form expired. Try again.")
        if self.throttle.blocked(visit.address):
            self._audit(visit, "sign-in refused", detail="too many failures from this address")
            return self._login_form(visit, 429, "Too many failed sign-ins. Wait a few minutes.")
        name, password = form.get("username", "").strip(), form.get("password", "")
        found = stored.user(self.store, name) if name else None
        now = stored.utc_now()
        if found and found["locked_until"] and found["locked_until"] > now:
            self._audit(visit, "sign-in refused", detail="account locked")
            return self._login_form(visit, 423, "This account is locked for a while.")
        if not auth.password_matches(found["password_hash"] if found else None, password) or not (
            found and found["active"]
        ):
            self.throttle.failed(visit.address)
            if found:
                stored.login_failed(
                    self.store,
                    name,
                    self.config.max_failed_logins,
                    timedelta(minutes=self.config.lockout_minutes),
                )
            self._audit(visit, "sign-in failed")
            return self._login_form(visit, 401, "Wrong user name or password.")
        assert found is not None
        stored.login_succeeded(self.store, name)
        cookie, visit.session = self.sessions.issue(name, found["session_epoch"])
        visit.user = found
        self._audit(visit, "sign-in")
        response = RedirectResponse(_local(form.get("next", "/")), 303)
        self._set_session(response, cookie)
        response.delete_cookie(auth.LOGIN_COOKIE, path="/")
        return response

    def logout(self, visit: Visit) -> Response:
        """Sign out: the user's every session ends (a copied cookie is worth nothing)."""
        stored.change_user(self.store, visit.username)
        self._audit(visit, "sign-out")
        response = RedirectResponse("/login", 303)
        response.delete_cookie(auth.SESSION_COOKIE, path="/")
        return response

    # ------------------------------------------------------------------ pages

    def home(self, visit: Visit) -> Response:
        return RedirectResponse("/queue" if visit.can("read") else "/users", 303)

    def queue(self, visit: Visit) -> Response:
        night = self._night_or_message(visit)
        if isinstance(night, Response):
            return night
        query = views.QueueQuery.of(dict(visit.request.query_params), night.choices)
        rows, total = views.queue_page(night, query, self.config.page_rows)
        owners = stored.assignments(self.store, [r["loan_id"] for r in rows])
        pages = max((total + self.config.page_rows - 1) // self.config.page_rows, 1)
        return self._render(
            visit,
            "queue.html.j2",
            rows=rows,
            total=total,
            query=query,
            pages=pages,
            owners=owners,
            sorts=views.SORTS,
        )

    def account(self, visit: Visit, status: int = 200, error: str = "") -> Response:
        night = self._night_or_message(visit)
        if isinstance(night, Response):
            return night
        loan_id = visit.request.path_params["loan_id"]
        detail = views.account(night, loan_id)
        if detail is None and not views.known_loan(night, loan_id):
            return self._message(visit, 404, f"No loan {loan_id}.")
        self._audit(visit, "view account", loan_id)
        if detail is None:
            detail = {"loan": None, "letters": [], "all_letters": [], "events": []}
            detail |= {"options": [], "promises": [], "decisions": [], "history": []}
        made = self._decisions(loan_id, detail)
        holds: list[dict[str, Any]] = []
        if any(r["kind"] == "hold" for r in made):
            templates = {r["letter_id"]: r["template"] for r in detail["all_letters"]}
            frame = pl.DataFrame(
                [r | {"template": templates.get(r["letter_id"])} for r in made],
                schema=cases.DECISION_SCHEMA | {"template": pl.String()},
            )
            holds = cases.active_holds(frame, self._now().date()).to_dicts()
        promised = {p["decision_id"]: p for p in detail["promises"]}
        history = sorted(
            [
                {
                    "when": r["made_at"].isoformat(sep=" ", timespec="minutes"),
                    "what": r["kind"],
                    "who": r["made_by"],
                    "text": decision_text(r, promised.get(r["decision_id"])) or "",
                    "status": (promised.get(r["decision_id"]) or {}).get("status", ""),
                }
                for r in made
            ]
            + [
                {
                    "when": e["as_of_date"].isoformat(),
                    "what": f"case {e['event']}",
                    "who": "night",
                    "text": e["note"] or "",
                    "status": "",
                }
                for e in detail["events"]
            ],
            key=lambda h: h["when"],
            reverse=True,
        )
        return self._render(
            visit,
            "account.html.j2",
            status,
            loan_id=loan_id,
            d=detail,
            case=stored.case(self.store, loan_id),
            holds=holds,
            history=history,
            outcomes=OUTCOMES,
            people=[u for u in stored.all_users(self.store) if u["active"]]
            if visit.can("assign")
            else [],
            error=error,
            saved=visit.request.query_params.get("saved", ""),
            today=self._now().date(),
        )

    def letter(self, visit: Visit) -> Response:
        """One of the loan's letters as the night printed it (its PDF)."""
        night = self._night_or_message(visit)
        if isinstance(night, Response):
            return night
        loan_id, letter_id = (visit.request.path_params[k] for k in ("loan_id", "letter_id"))
        path = views.letter_pdf(night, loan_id, letter_id)
        if path is None:
            return self._message(visit, 404, f"No printed letter {letter_id} of loan {loan_id}.")
        self._audit(visit, "viewed letter", loan_id, letter_id)
        return FileResponse(path, media_type="application/pdf", filename=f"{letter_id}.pdf")

    def _decisions(self, loan_id: str, detail: dict[str, Any]) -> list[dict[str, Any]]:
        """The loan's decisions: those the night took in, and those recorded since."""
        found = {r["decision_id"]: r for r in detail["decisions"]}
        for row in stored.decision_rows(self.store, loan_id):
            found[row["decision_id"]] = night_decisions.as_warehouse_row(row)
        return sorted(found.values(), key=lambda r: (r["made_at"], r["decision_id"]))

    def decide(self, visit: Visit) -> Response:
        night = self._night_or_message(visit)
        if isinstance(night, Response):
            return night
        loan_id = visit.request.path_params["loan_id"]
        form = visit.form
        kind = form.get("kind", "")
        needed = {"hold": "hold", "release": "release"}.get(kind, "decide")
        if not visit.can(needed):
            self._audit(visit, "refused", loan_id, f"{kind}: role")
            return self._message(visit, 403, "Your role does not allow this.")
        try:
            fields = self._decision_fields(kind, form)
            made_at = self._now()
            night_decisions.check_decision(
                kind,
                made_by=visit.username,
                made_at=made_at,
                promise_date=fields.get("promise_date"),
                promise_amount=fields.get("promise_amount"),
                note=fields["note"],
            )
            cur = night.cursor()
            try:
                night_decisions.check_loan(cur, loan_id, fields.get("letter_id"), "the night")
            finally:
                cur.close()
            amount = fields.pop("promise_amount", None)
            row = stored.record(
                self.store,
                kind=kind,
                loan_id=loan_id,
                made_by=visit.username,
                made_at=made_at,
                version=_version(form),
                promise_cents=None if amount is None else int(amount * 100),
                **fields,
            )
        except StaleCase as exc:
            self._audit(visit, "refused stale", loan_id, kind)
            return self.account(visit, 409, str(exc))
        except LienwatchError as exc:
            return self.account(visit, 400, str(exc).replace("--", ""))
        self._audit(visit, f"recorded {kind}", loan_id, row["decision_id"])
        return RedirectResponse(f"/loans/{quote(loan_id)}?saved={quote(kind)}", 303)

    def _decision_fields(self, kind: str, form: dict[str, str]) -> dict[str, Any]:
        fields: dict[str, Any] = {"note": form.get("note", "").strip() or None}
        if kind == "contact":
            if form.get("outcome") not in OUTCOMES:
                raise LienwatchError(f"a contact attempt's outcome: one of {', '.join(OUTCOMES)}")
            fields["outcome"] = form["outcome"]
        if kind == "promise":
            try:
                fields["promise_date"] = datetime.strptime(form.get("date", ""), "%Y-%m-%d").date()
            except ValueError:
                raise LienwatchError("a promise needs the date it is to be paid by") from None
            try:
                fields["promise_amount"] = Decimal(
                    form.get("amount", "").replace(",", "").lstrip("$")
                )
            except InvalidOperation:
                raise LienwatchError("a promise needs an amount in dollars") from None
            if not fields["promise_amount"].is_finite():
                raise LienwatchError("a promise needs an amount in dollars")
        if kind in ("hold", "release"):
            fields["letter_id"] = form.get("letter_id") or None
        return fields

    def assign(self, visit: Visit) -> Response:
        loan_id = visit.request.path_params["loan_id"]
        to = visit.form.get("to") or None
        try:
            stored.assign(self.store, loan_id, to, visit.username, _version(visit.form))
        except StaleCase as exc:
            self._audit(visit, "refused stale", loan_id, "assign")
            return self.account(visit, 409, str(exc))
        except LienwatchError as exc:
            return self.account(visit, 400, str(exc))
        self._audit(visit, "assigned", loan_id, f"to {to or 'nobody'}")
        return RedirectResponse(f"/loans/{quote(loan_id)}?saved=assignment", 303)

    def calls(self, visit: Visit) -> Response:
        night = self._night_or_message(visit)
        if isinstance(night, Response):
            return night
        since = datetime.combine(night.as_of, datetime.min.time())
        done = stored.contacted_since(self.store, since)
        page = _page(visit)
        rows, left = views.call_list(night, done, page)
        pages = max((left + views.CALLS_SHOWN - 1) // views.CALLS_SHOWN, 1)
        return self._render(
            visit, "calls.html.j2", rows=rows, left=left, done=len(done), page=page, pages=pages
        )

    def mine(self, visit: Visit) -> Response:
        night = self._night_or_message(visit)
        if isinstance(night, Response):
            return night
        held = stored.assigned(self.store, visit.username)
        rows = views.queue_rows(night, [c["loan_id"] for c in held])
        return self._render(visit, "mine.html.j2", held=held, rows=rows)

    def workload(self, visit: Visit) -> Response:
        today = datetime.combine(self._now().date(), datetime.min.time())
        return self._render(visit, "workload.html.j2", people=stored.workload(self.store, today))

    def portfolio(self, visit: Visit) -> Response:
        night = self._night_or_message(visit)
        if isinstance(night, Response):
            return night
        return self._render(visit, "portfolio.html.j2", f=night.figures)

    def audit(self, visit: Visit) -> Response:
        page = _page(visit)
        rows = stored.audit_rows(
            self.store,
            limit=AUDIT_ROWS,
            offset=(page - 1) * AUDIT_ROWS,
            loan_id=visit.request.query_params.get("loan") or None,
        )
        return self._render(
            visit, "audit.html.j2", rows=rows, page=page, more=len(rows) == AUDIT_ROWS
        )

    def audit_csv(self, visit: Visit) -> Response:
        self._audit(visit, "exported the audit log")
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["at_utc", "username", "address", "action", "loan_id", "detail"])
        for r in reversed(stored.audit_rows(self.store)):
            writer.writerow(
                [
                    r["at"].isoformat(),
                    r["username"],
                    r["address"],
                    r["action"],
                    r["loan_id"],
                    r["detail"],
                ]
            )
        return Response(
            out.getvalue(),
            media_type="text/csv",
            headers={"content-disposition": 'attachment; filename="audit.csv"'},
        )

    def users(self, visit: Visit) -> Response:
        return self._render(visit, "users.html.j2", people=stored.all_users(self.store))


def _local(path: str) -> str:
    """A path on this site to go to after signing in (anything else goes home)."""
    if path.startswith("/") and not path.startswith("//") and "\\" not in path:
        return path
    return "/"


def _page(visit: Visit) -> int:
    """The page asked for (1 when none or nonsense)."""
    try:
        return max(int(visit.request.query_params.get("page", "1")), 1)
    except ValueError:
        return 1


def _version(form: dict[str, str]) -> int:
    """The case version the form was drawn from (a missing or bad one is stale)."""
    try:
        return int(form.get("version", ""))
    except ValueError:
        return -1


def create_app(
    settings: Settings, db: Path, now: Callable[[], datetime] | None = None
) -> Starlette:
    """The workbench over the store and snapshots of the warehouse ``db``; ``now`` stands
    for the schedule's clock (tests replay a day of business on chosen dates)."""
    workbench = Workbench(settings, db, now)
    app = Starlette(routes=workbench.routes())
    app.state.workbench = workbench
    app.add_middleware(SecurityHeaders)
    return app
