"""The servicer's business days: which nights the schedule and backfill skip, and why."""

from __future__ import annotations

from datetime import date

import pytest

from lienwatch import entry
from lienwatch.business_days import closed_reason
from lienwatch.settings import Settings, SettingsError, parse_settings


@pytest.mark.parametrize(
    ("day", "reason"),
    [
        (date(2026, 11, 26), "Thanksgiving Day: a Federal Reserve holiday"),
        (date(2026, 11, 27), None),  # the Friday after: the Banks are open
        (date(2026, 11, 28), "weekend"),
        (date(2026, 7, 3), None),  # Independence Day on a Saturday: open the Friday before
        (date(2027, 7, 5), "Independence Day (observed): a Federal Reserve holiday"),  # a Sunday's
        (date(2026, 10, 12), "Columbus Day: a Federal Reserve holiday"),
        (date(2026, 11, 11), "Veterans Day: a Federal Reserve holiday"),
        (date(2026, 4, 3), None),  # Good Friday: the markets close, the Banks do not
        (date(2026, 12, 7), None),
    ],
)
def test_federal_reserve_days(day, reason):
    assert closed_reason(day, "federal_reserve") == reason


def test_other_calendars_and_closed_dates():
    assert closed_reason(date(2026, 4, 3), "XNYS") == "Good Friday: a XNYS holiday"
    assert closed_reason(date(2026, 11, 26), "none") is None
    assert closed_reason(date(2026, 12, 24), "federal_reserve", (date(2026, 12, 24),)) == (
        "a closed date of the settings (schedule.closed_dates)"
    )


def test_an_unknown_calendar_is_refused_naming_the_key():
    with pytest.raises(SettingsError, match=r"schedule\.calendar.*unknown calendar 'XXXX'"):
        parse_settings({"schedule": {"calendar": "XXXX"}})
    found = parse_settings({"schedule": {"calendar": "XNYS", "closed_dates": ["2026-12-24"]}})
    assert found.schedule.closed_dates == (date(2026, 12, 24),)


def test_backfill_skips_the_closed_days_with_their_reasons(monkeypatch, tmp_path):
    """Thanksgiving week: the holiday and the weekend skipped, each named; the rest run."""
    ran: list[date] = []

    def night(settings, *, data, db, out, as_of):
        ran.append(as_of)
        return {
            "as_of_date": as_of.isoformat(),
            "run_id": "r",
            "status": "completed",
            "steps": {},
            "warehouse": str(db),
            "outputs": str(out),
        }

    monkeypatch.setattr(entry, "run_night", night)

    def week(settings: Settings) -> list[str]:
        return list(
            entry.run_backfill(
                settings,
                data=tmp_path,
                db=tmp_path / "wh.duckdb",
                out=tmp_path,
                start=date(2026, 11, 25),
                end=date(2026, 12, 1),
            )
        )

    lines = week(parse_settings({"schedule": {"closed_dates": ["2026-11-27"]}}))
    assert ran == [date(2026, 11, 25), date(2026, 11, 30), date(2026, 12, 1)]
    assert lines[1] == "night 2026-11-26: skipped (Thanksgiving Day: a Federal Reserve holiday)"
    assert lines[2] == (
        "night 2026-11-27: skipped (a closed date of the settings (schedule.closed_dates))"
    )
    assert lines[3:5] == [
        "night 2026-11-28: skipped (weekend)",
        "night 2026-11-29: skipped (weekend)",
    ]
    assert Settings().schedule.calendar == "federal_reserve"
    ran.clear()
    week(parse_settings({"schedule": {"business_days_only": False}}))
    assert len(ran) == 7
