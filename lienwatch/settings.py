"""Settings: one typed, validated object read from ``lienwatch.toml``.

Every value has a default (documented in ``docs/configuration.md`` and in the field's
description), so an empty or missing file gives a working demo configuration. A value
of the wrong type, an unknown key or an impossible combination stops the run with a
message naming the key. Nothing here reads the environment: the CLI builds the object
once and passes it down.
"""

from __future__ import annotations

import inspect
import tomllib
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

DEFAULT_SETTINGS_FILE = Path("lienwatch.toml")


class SettingsError(ValueError):
    """A settings file that cannot be used; the message names the file and the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Servicer(_Section):
    """Who the letters come from and how a borrower reaches the assigned team."""

    name: str = Field("Golden Gate Home Lending Servicing", description="Servicer name on letters.")
    mailing_address: tuple[str, ...] = Field(
        ("PO Box 4410", "Sacramento, CA 95812"),
        description="Servicer mailing address lines (Regulation X §1024.39(b)(2)(ii)).",
    )
    team_name: str = Field(
        "Homeowner Assistance Team", description="The assigned loss-mitigation team."
    )
    team_name_es: str = Field(
        "Equipo de Asistencia a Propietarios",
        description="The team's name in Spanish (letters in Spanish).",
    )
    team_phone: str = Field("(800) 555-0142", description="Direct phone of the assigned team.")
    team_hours: str = Field(
        "Monday to Friday, 8 a.m. to 8 p.m., Saturday 9 a.m. to 1 p.m. Pacific time",
        description="When the team answers.",
    )
    team_hours_es: str = Field(
        "de lunes a viernes, de 8 a. m. a 8 p. m., y sábados de 9 a. m. a 1 p. m., hora del Pacífico",
        description="The same, in Spanish (letters in Spanish).",
    )
    signer_name: str = Field(
        "Dana Whitfield",
        min_length=1,
        description="Who signs the letters: the name in each letter's signature block.",
    )
    signer_title: str = Field(
        "Manager, Homeowner Assistance", min_length=1, description="The signer's title."
    )
    signer_title_es: str = Field(
        "Gerente de Asistencia a Propietarios",
        min_length=1,
        description="The signer's title in Spanish (letters in Spanish).",
    )
    website: str = Field("www.goldengatehl.example/help", description="Where borrowers learn more.")
    email: str | None = Field("help@goldengatehl.example", description="Optional contact e-mail.")
    debt_collector: bool = Field(
        False,
        description=(
            "The servicer is a debt collector under the FDCPA for every loan (it took over the "
            "servicing of loans already in default, 15 U.S.C. 1692a(6)(F)(iii)); the loans "
            "column acquired_in_default says so loan by loan. Where it is, letters carry the "
            "FDCPA disclosure, and letters to California borrowers the Rosenthal notice."
        ),
    )

    @field_validator("mailing_address")
    @classmethod
    def _address_lines(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or not all(line.strip() for line in value):
            raise ValueError("needs at least one non-empty line")
        return value


class Paths(_Section):
    """Where a night reads and writes, unless the command line says otherwise."""

    data: Path = Field(Path("sample_data"), description="Landing folder.")
    db: Path = Field(Path("var/lienwatch.duckdb"), description="DuckDB warehouse file.")
    out: Path = Field(Path("var/out"), description="Letters, reports and validation results.")


class Delinquency(_Section):
    """How days past due are counted (contract rules 1-6)."""

    shortfall_tolerance: Annotated[Decimal, Field(ge=0, le=1000, decimal_places=2)] = Field(
        Decimal("0.00"),
        description=(
            "An installment counts as paid when net paid reaches the installments' sum "
            "less this many dollars (Regulation X comment 31-3; the servicer's policy)."
        ),
    )


class Risk(_Section):
    """Early-warning signals, the queue score and the review capacity (second liens only).

    The score orders the review queue within a tier: the sum of the weights of the
    signals present, plus ``weight_per_day_past_due`` for each day past due.
    """

    senior_dpd_threshold: int = Field(
        30,
        ge=1,
        le=365,
        description="Senior lien days past due that raise the senior_lien_delinquent signal.",
    )
    nsf_lookback_days: int = Field(
        90,
        ge=1,
        le=730,
        description="A returned (NSF) payment within this many days raises returned_payment.",
    )
    payment_rise_ratio: Decimal = Field(
        Decimal("1.20"),
        gt=1,
        le=10,
        description="A scheduled payment rising to at least this multiple of the current one raises payment_shock.",
    )
    payment_rise_horizon_days: int = Field(
        90, ge=1, le=365, description="How far ahead a scheduled payment rise is looked for."
    )
    drift_min_days: int = Field(
        16,
        ge=1,
        le=60,
        description="Days late of the latest installment from which a steadily rising lateness raises paying_later: past the grace period, since lateness inside it rises and falls by chance month to month.",
    )
    late_days_threshold: int = Field(
        15,
        ge=1,
        le=60,
        description="An installment paid more than this many days after its due date counts as paid late.",
    )
    cltv_threshold: Decimal = Field(
        Decimal("1.00"),
        gt=0,
        le=5,
        description="Combined LTV (senior balance + this balance over value) above which underwater is raised.",
    )
    review_capacity: int = Field(
        500,
        ge=1,
        description="How many flagged loans the team can review in a morning; the queue beyond it is cut by tier then score, and counted.",
    )
    review_page_rows: int = Field(
        5_000,
        ge=1,
        description="Most flagged loans the review page and queue.xlsx carry: the queue, then the calls due, then the rest in queue order. Every flagged loan is in queue.csv; the page says how many it leaves out.",
    )
    weights: dict[str, Decimal] = Field(
        default_factory=lambda: {
            "senior_lien_delinquent": Decimal("30"),
            "returned_payment": Decimal("20"),
            "partial_or_suspense": Decimal("10"),
            "payment_shock": Decimal("25"),
            "paying_later": Decimal("15"),
            "underwater": Decimal("15"),
            "worsening_bucket": Decimal("20"),
            "early_delinquency": Decimal("10"),
        },
        description="Score weight of each signal (reason code to points).",
    )
    weight_per_day_past_due: Decimal = Field(
        Decimal("0.5"), ge=0, description="Score points per day past due."
    )
    grace_days: int = Field(
        15,
        ge=0,
        le=29,
        description="Days after a due date inside which a late payment alone does not flag a loan under the rules (the note's grace period).",
    )
    horizon_months: int = Field(
        6,
        ge=1,
        le=24,
        description="The model predicts reaching 90+ days past due within this many months.",
    )
    min_history_months: int = Field(
        12,
        ge=6,
        description="lienwatch train refuses with fewer month ends of history than this.",
    )
    min_bad_loans: int = Field(
        50,
        ge=1,
        description="lienwatch train refuses when fewer loans than this went bad in its training month ends.",
    )
    validation_months: int = Field(
        3,
        ge=1,
        le=12,
        description="The newest month ends with a full follow-up held out to validate the model (and as many before them to calibrate it).",
    )
    early_warning_share: float = Field(
        0.025,
        gt=0,
        le=0.5,
        description="The flag threshold train proposes flags at most this share of current second liens on the validation month ends.",
    )
    flag_threshold: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Risk from which a loan below 30 days past due is flagged early_warning; unset takes the threshold the model in use proposed.",
    )
    use_model: bool = Field(
        True,
        description="Score with the model in use (lienwatch train) when there is one; false keeps the rules.",
    )
    recovery_cost: float = Field(
        0.10,
        ge=0,
        lt=1,
        description="Share of the property's value a sale would cost, for a second lien's exposure in the expected loss that orders the queue.",
    )
    psi_warning: float = Field(
        0.25,
        gt=0,
        description="A night warns when its score distribution has shifted this much (population stability index) from the model's training sample.",
    )

    @field_validator("weights")
    @classmethod
    def _known_signals(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        from transforms.contract import SIGNALS

        unknown = sorted(set(value) - set(SIGNALS))
        if unknown:
            raise ValueError(f"unknown signal(s) {', '.join(unknown)}; known: {', '.join(SIGNALS)}")
        return {code: value.get(code, Decimal("0")) for code in SIGNALS}


class Options(_Section):
    """The hardship-options catalogue (the servicer's policy, as data)."""

    catalogue: Path | None = Field(
        None,
        description=(
            "TOML catalogue of hardship options and their rules; unset uses the bundled "
            "lienwatch/catalogue/hardship_options.toml. Read afresh every night."
        ),
    )


# The longest cadences that keep every required notice in time. The early intervention
# notice is due again 180 days after the last while the borrower is 45 or more days behind
# (Regulation X §1024.39(b)(1)). A HELOC's counseling notice is due by day 45 of each
# delinquency; one delinquency's day 45 and the next one's can be as little as 28 days apart
# (the previous installment paid, the next one, a February month later, missed).
NOTICE_REPEAT_DAYS = 180
COUNSELING_REPEAT_DAYS = 28


class Letters(_Section):
    """Which letter goes to whom and when (Regulation X §1024.39, 12 U.S.C. 1701x(c)(5))."""

    notice_from_day: int = Field(
        30,
        ge=1,
        le=45,
        description="Days past due from which the Regulation X early intervention notice is sent (it must be out by day 45).",
    )
    notice_every_days: int = Field(
        180,
        ge=180,
        le=365,
        description="At most one early intervention notice (any form) per loan in this many days; at most 180, when the next notice is due while the borrower is still behind.",
    )
    heloc_counseling_from_day: int = Field(
        30,
        ge=1,
        le=45,
        description="Days past due from which a HELOC gets the HUD counseling notice (due within 45 days of the missed payment).",
    )
    heloc_counseling_every_days: int = Field(
        28,
        ge=1,
        le=365,
        description="At most one counseling notice per HELOC in this many days (and one per delinquency); at most 28, so a new delinquency's notice is still out by its day 45.",
    )
    imminent_default_every_days: int = Field(
        60,
        ge=1,
        le=365,
        description="At most one imminent-default letter per loan in this many days.",
    )
    early_warning_every_days: int = Field(
        90,
        ge=1,
        le=365,
        description="At most one courtesy (early-warning) letter per loan in this many days.",
    )
    min_gap_days: int = Field(
        14,
        ge=0,
        le=90,
        description="No courtesy letter within this many days of a borrower's last letter (required notices are never held back).",
    )
    render: bool = Field(
        True,
        description="false: a dry run that records each letter decision (as suppressed, 'dry run') without writing letters.",
    )
    max_options: int = Field(
        4,
        ge=1,
        le=12,
        description="Options shown in a letter (by rank), besides housing counseling.",
    )
    render_workers: int = Field(
        0,
        ge=0,
        le=256,
        description="Processes that render letters (or local Dask workers); 0 uses every core.",
    )
    fan_out: Literal["processes", "dask"] = Field(
        "processes",
        description="Where letter rendering fans out: a local process pool, or Dask through Prefect's Dask task runner (docs/scaling.md).",
    )
    dask_address: str | None = Field(
        None,
        description="Scheduler address of an existing Dask cluster (tcp://host:8786); unset starts a local cluster.",
    )
    chunk_size: int = Field(250, ge=1, le=100_000, description="Letters per Dask rendering task.")

    @model_validator(mode="after")
    def _required_notices_in_time(self) -> Letters:
        """Refuse cadences that would hold a required notice past its deadline."""
        late = [
            f"{key} = {value} holds {what}"
            for key, value, most, what in (
                (
                    "notice_every_days",
                    self.notice_every_days,
                    NOTICE_REPEAT_DAYS,
                    "a repeat early intervention notice past the 180 days after the last "
                    "that Regulation X §1024.39(b)(1) allows while the borrower is behind",
                ),
                (
                    "heloc_counseling_every_days",
                    self.heloc_counseling_every_days,
                    COUNSELING_REPEAT_DAYS,
                    "a new delinquency's HUD counseling notice past its day 45 "
                    "(12 U.S.C. 1701x(c)(5)): the next delinquency's day 45 can come "
                    f"{COUNSELING_REPEAT_DAYS} days after the last one's",
                ),
            )
            if value > most
        ]
        if late:
            raise ValueError(
                f"required notices would go out late: {'; '.join(late)}; "
                f"the most each allows is notice_every_days = {NOTICE_REPEAT_DAYS}, "
                f"heloc_counseling_every_days = {COUNSELING_REPEAT_DAYS}"
            )
        return self


class Schedule(_Section):
    """When the nightly flow runs when served."""

    cron: str = Field("0 2 * * *", description="Cron expression for `lienwatch serve`.")
    timezone: str = Field("America/Los_Angeles", description="Time zone of the cron expression.")
    calendar: str = Field(
        "federal_reserve",
        description="Holidays on which scheduled nights and backfill are skipped: "
        "`federal_reserve` (the Federal Reserve Banks' holidays), any financial calendar of "
        "the `holidays` library (`XNYS`, ...), or `none` (weekends and closed dates only).",
    )
    closed_dates: tuple[date, ...] = Field(
        (), description="Further days the servicer is closed (skipped like a holiday)."
    )
    business_days_only: bool = Field(
        True,
        description="Skip weekends, holidays and closed dates on scheduled nights and in "
        "backfill; false runs every day.",
    )

    @field_validator("calendar")
    @classmethod
    def _known_calendar(cls, value: str) -> str:
        from lienwatch.business_days import FEDERAL_RESERVE, NO_HOLIDAYS, calendars

        if value not in (FEDERAL_RESERVE, NO_HOLIDAYS) and value not in calendars():
            raise ValueError(
                f"unknown calendar {value!r}: federal_reserve, none, or a financial calendar "
                "of the holidays library (XNYS, XNAS, ...)"
            )
        return value


class Workbench(_Section):
    """The analysts' web application (`lienwatch workbench`, docs/workbench.md)."""

    host: str = Field("127.0.0.1", description="Address `lienwatch workbench` listens on.")
    port: int = Field(8321, ge=1, le=65535, description="Port it listens on.")
    database_url: str | None = Field(
        None,
        description="The store of analysts' decisions, users and the audit log, as a "
        "SQLAlchemy URL (`postgresql+psycopg://...` for a team's server); by default the "
        "SQLite file `workbench.sqlite` beside the warehouse.",
    )
    snapshots: Path | None = Field(
        None,
        description="Where each completed night publishes what the workbench reads; by "
        "default the folder `workbench/` beside the warehouse.",
    )
    session_minutes: int = Field(
        480, ge=5, le=7 * 24 * 60, description="A sign-in lasts this long, then asks again."
    )
    secure_cookies: bool = Field(
        False,
        description="Send the session cookie over HTTPS only: true behind a TLS reverse proxy.",
    )
    proxy_user_header: str | None = Field(
        None,
        description="Sign in the user this request header names (single sign-on at a "
        "reverse proxy); off unless set. Only from `trusted_proxies`.",
    )
    trusted_proxies: tuple[str, ...] = Field(
        ("127.0.0.1",),
        description="Peer addresses whose `proxy_user_header` and X-Forwarded-For are believed.",
    )
    max_failed_logins: int = Field(
        5, ge=1, le=100, description="Failed sign-ins in a row that lock an account."
    )
    lockout_minutes: int = Field(
        15, ge=1, le=24 * 60, description="How long a locked account stays locked."
    )
    page_rows: int = Field(50, ge=10, le=500, description="Queue rows on one page.")


class Settings(_Section):
    """The whole configuration of a lienwatch installation."""

    servicer: Servicer = Servicer()
    paths: Paths = Paths()
    delinquency: Delinquency = Delinquency()
    risk: Risk = Risk()
    options: Options = Options()
    letters: Letters = Letters()
    schedule: Schedule = Schedule()
    workbench: Workbench = Workbench()


def _key_of(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def parse_settings(raw: dict[str, Any], source: str = "settings") -> Settings:
    """Validate a settings mapping; errors name the source and the dotted key."""
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_key_of(err['loc'])}: {err['msg']}" for err in exc.errors(include_url=False)
        )
        raise SettingsError(f"{source}: {problems}") from None


def load_settings(path: Path | None = None) -> Settings:
    """Read settings from ``path`` (default ``./lienwatch.toml`` when it exists)."""
    if path is None:
        if not DEFAULT_SETTINGS_FILE.exists():
            return Settings()
        path = DEFAULT_SETTINGS_FILE
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"{path}: settings file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: not valid TOML ({exc})") from None
    return parse_settings(raw, source=str(path))


def settings_reference() -> str:
    """Every setting with its default and meaning, as Markdown (docs/configuration.md)."""
    lines = [
        "# Configuration",
        "",
        "lienwatch reads `lienwatch.toml` from the working folder (or the file given with",
        "`--config`). Every key is optional; an unknown key, or a value of the wrong type or",
        "out of range, stops the command with a message naming the key. This page is made",
        "from the settings code (`lienwatch settings --reference`), so it lists every key.",
        "",
    ]
    for section_name, section_field in Settings.model_fields.items():
        section_cls = section_field.annotation
        # every field of Settings is one section, annotated with its _Section subclass
        assert isinstance(section_cls, type) and issubclass(section_cls, _Section)
        lines += [
            f"## [{section_name}]",
            "",
            inspect.cleandoc(section_cls.__doc__ or ""),
            "",
            "| key | default | meaning |",
            "|---|---|---|",
        ]
        default = section_field.default
        for key, field_info in section_cls.model_fields.items():
            value = getattr(default, key)
            shown = _toml_value(value)
            lines.append(f"| `{key}` | `{shown}` | {field_info.description or ''} |")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | Path):
        return '"' + str(value) + '"'
    if isinstance(value, Decimal):
        return f'"{value}"'
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if value is None:
        return "(none)"
    return str(value)
