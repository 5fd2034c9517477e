"""The servicer's business days: which nights the schedule and ``backfill`` run.

A night is skipped on a weekend, on a holiday of the settings' calendar
(``schedule.calendar``) and on the closed dates the settings list
(``schedule.closed_dates``). The default calendar is the Federal Reserve Banks'
(their holiday schedule: the eleven federal holidays; one that falls on a Sunday is
observed on the Monday, one that falls on a Saturday is not moved, the Banks being open
that Friday), built from the ``holidays`` library's United States calendar. Any of that
library's financial calendars may be named instead (``XNYS``, the New York Stock
Exchange, for example), or ``none`` for weekends and closed dates alone.

``lienwatch run`` runs the night it is asked for (today by default), whatever the
calendar says.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import cache

FEDERAL_RESERVE = "federal_reserve"
NO_HOLIDAYS = "none"


def calendars() -> set[str]:
    """The calendars ``schedule.calendar`` may name."""
    import holidays

    return {FEDERAL_RESERVE, NO_HOLIDAYS, *holidays.list_supported_financial()}


@cache
def holidays_of(calendar: str, year: int) -> dict[date, str]:
    """The days a calendar closes in a year, with the holiday's name."""
    import holidays

    if calendar == NO_HOLIDAYS:
        return {}
    if calendar != FEDERAL_RESERVE:
        return dict(holidays.financial_holidays(calendar, years=year).items())
    found = dict(holidays.US(years=year, observed=False).items())
    for day, name in list(found.items()):
        if day.weekday() == 6:  # a Sunday holiday closes the Banks on the Monday
            found.setdefault(day + timedelta(days=1), f"{name} (observed)")
    return found


def label(calendar: str) -> str:
    return "Federal Reserve" if calendar == FEDERAL_RESERVE else calendar


def closed_reason(day: date, calendar: str, closed_dates: tuple[date, ...] = ()) -> str | None:
    """Why ``day`` is not a business day (None when it is one)."""
    if day.weekday() >= 5:
        return "weekend"
    if day in closed_dates:
        return "a closed date of the settings (schedule.closed_dates)"
    name = holidays_of(calendar, day.year).get(day)
    return f"{name}: a {label(calendar)} holiday" if name else None
