"""The hidden hardship model of the realistic profile: month by month, what each borrower pays.

Plain numpy over one chunk of loans, one calendar month at a time (a few dozen steps,
each vectorised over the chunk). Nothing here is written to the landing folder: the
generator turns the paths it returns into ledger rows and senior-lien reports, so a
hardship shows only through what a servicer would see of it.

- **Habits.** Every borrower has a payment habit: before the due date, on it by
  autopay, a few days late inside the grace period (1-15 days) month after month, or
  later still but inside the month. Habits alone never make a loan default.
- **Hardship.** Each month a healthy loan may meet a hardship (a lost job, an illness,
  a payment it cannot meet). The monthly hazard is higher for a loan underwater
  (CLTV above 100 %), in the two years after a HELOC's draw period ends, in the year
  after a closed-end rate reset, and in the year after its first lien fell behind.
- **Warning.** After the event most loans show some signs, each with a probability
  and none for sure, for two to four months while they still pay: payments posted
  later and later, payments returned unpaid (NSF) and presented again, short payments
  made up later, the first lien falling behind. Some borrowers stop with no sign at
  all.
- **Outcome.** A borrower who cannot recover stops paying, and then each month pays
  nothing, pays one installment (staying as far behind) or, now and then, catches up.
  One who recovers shows the signs and goes back to normal (a false alarm), or misses
  a payment or two and catches up. A loan 180 days behind is charged off (second
  liens) or referred to foreclosure (first liens) and its ledger stops; a few stay
  active, in bankruptcy or waiting on the first lien's foreclosure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HABITS = ("on_time", "autopay", "grace", "slow")
HABIT_SHARES = (0.60, 0.10, 0.24, 0.06)
ON_TIME, AUTOPAY, GRACE, SLOW = range(4)

# What a month's money looks like in the ledger (Paths.kind).
PLAIN, RETURNED, BOUNCED, SPLIT, PAYOFF = range(5)

# Where a loan stands (State.phase) and the way its hardship goes (State.path).
HEALTHY, WARNING, DELINQUENT, GONE = range(4)
NO_PATH, CANNOT_RECOVER, RECOVERS = range(3)

# The signs a hardship may show (State.signs, a bit mask).
DRIFT, RETURNS, SHORT, SENIOR = 1, 2, 4, 8

# Payment changes (Book.change_kind).
NO_CHANGE, END_OF_DRAW, RATE_RESET = range(3)

# The loan's status at the end (Paths.status), in the contract's words.
STATUSES = ("active", "paid_off", "charged_off", "foreclosure", "transferred")
ACTIVE, PAID_OFF, CHARGED_OFF, FORECLOSURE, TRANSFERRED = range(5)

NEVER = np.iinfo(np.int32).max
CHARGE_OFF_INSTALLMENTS = 6  # six installments behind: 180 days past due within the month


@dataclass(frozen=True)
class Rates:
    """The model's monthly probabilities and multipliers.

    Tuned so that the bundled sample's figures fall in the published ranges of a
    normal-year second-lien book (docs/portfolio.md): about 1-2 % of HELOCs and 2-4 %
    of closed-end seconds 30+ days past due, about 1 % 90+.
    """

    hardship_heloc: float = 0.0036
    hardship_closed_end: float = 0.0125
    hardship_first_lien: float = 0.013
    underwater: float = 2.0  # CLTV above 100 %
    deep_underwater: float = 3.0  # CLTV above 110 %
    end_of_draw: float = 5.5  # the 24 months from a HELOC's first amortizing installment
    end_of_draw_months: int = 24
    rate_reset: float = 2.0  # the 12 months from a closed-end payment rise
    rate_reset_months: int = 12
    senior_trouble: float = 3.0  # the 12 months after the first lien fell behind
    senior_trouble_months: int = 12
    cannot_recover: float = 0.35  # share of hardships the borrower does not get over
    sudden: float = 0.25  # of those: no sign before the first missed payment
    false_alarm: float = 0.4  # of the others: signs, then back to normal without missing
    # The signs after a hardship, each drawn on its own (for a borrower who will not
    # recover; one who recovers shows them a little less often).
    drift: float = 0.7
    returns: float = 0.35
    short: float = 0.3
    senior: float = 0.45
    senior_recovers: float = 0.2
    # Noise on healthy loans: the same signs with no hardship behind them.
    slip: float = 0.0015  # a payment made only after the next due date, then caught up
    returned_noise: float = 0.002
    short_noise: float = 0.002
    senior_blip: float = 0.0015  # the first lien 30 (sometimes 60) days behind, then cured
    # Loans leaving the book while healthy, inside the ledger's window.
    payoff: float = 0.003
    transfer: float = 0.0003
    # Of loans reaching 180 days: share that stays active for a while (bankruptcy, the
    # first lien's foreclosure pending) before being charged off or referred after all.
    kept_active: float = 0.08
    kept_months: tuple[int, int] = (3, 13)
    # A month of a borrower who cannot recover, by how far behind: pays nothing, pays
    # one installment (stays as far behind), or catches up; the rest of the mass.
    behind_pays_none: float = 0.84
    behind_pays_one: float = 0.11
    deep_pays_none: float = 0.88  # three or more installments behind
    deep_pays_one: float = 0.08
    recovering_pays_none: float = 0.15
    recovering_pays_one: float = 0.3
    loss_mit_case: float = 0.35  # a case opened when a loan falls two installments behind


@dataclass(frozen=True)
class Book:
    """One chunk's loans as the model needs them (arrays of one value per loan).

    Months are indices into the chunk's calendar of months (``months`` of them, the
    first at 0). A loan's installment k falls due in month ``first_month + k``.
    """

    first_month: np.ndarray  # month of installment 0 (negative: before the calendar)
    term: np.ndarray
    second: np.ndarray  # bool
    heloc: np.ndarray  # bool
    cltv: np.ndarray
    change_month: np.ndarray  # month of the first installment at a new amount (NEVER: none)
    change_kind: np.ndarray  # NO_CHANGE, END_OF_DRAW or RATE_RESET
    months: int
    window_month: int  # the first month of the ledger's window: loans leave from here on

    @property
    def n(self) -> int:
        return len(self.first_month)


@dataclass
class Paths:
    """What the model decided, month by month: arrays of shape (months, loans), and per loan.

    ``paid`` installments paid with the month's money (0 when it pays nothing; more than
    one when it catches up), posted ``offset`` days after the month's due date, in the
    shape ``kind`` says. ``senior_dpd`` is the first lien's days past due at the month's
    end (second liens). A loan leaves in ``exit_month`` (NEVER: it does not) with the
    end status ``status``; ``oldest_unpaid`` is the installment its 180 days count from
    when it got there; ``case_month`` is when a loss-mitigation case was opened (-1:
    none).
    """

    paid: np.ndarray
    offset: np.ndarray
    kind: np.ndarray
    senior_dpd: np.ndarray
    habit: np.ndarray
    exit_month: np.ndarray
    status: np.ndarray
    oldest_unpaid: np.ndarray
    case_month: np.ndarray


@dataclass
class _State:
    """Where each loan stands between months (one value per loan)."""

    phase: np.ndarray
    path: np.ndarray
    signs: np.ndarray
    warning_left: np.ndarray  # months of warning still to come
    warning_month: np.ndarray  # months of warning so far
    drift_step: np.ndarray  # days later each month while drifting
    arrears: np.ndarray  # installments due and unpaid
    entered: np.ndarray  # the month the loan became delinquent (its first missed payment)
    senior_from: np.ndarray  # the first lien is behind from this month ...
    senior_to: np.ndarray  # ... to the month before this one
    senior_until: np.ndarray  # the hazard stays raised until this month
    kept_until: np.ndarray  # a loan kept active at 180 days leaves the book in this month

    @classmethod
    def start(cls, n: int) -> _State:
        never = np.full(n, NEVER, dtype=np.int32)
        return cls(
            phase=np.full(n, HEALTHY, dtype=np.int8),
            path=np.full(n, NO_PATH, dtype=np.int8),
            signs=np.zeros(n, dtype=np.int8),
            warning_left=np.zeros(n, dtype=np.int8),
            warning_month=np.zeros(n, dtype=np.int8),
            drift_step=np.zeros(n, dtype=np.float32),
            arrears=np.zeros(n, dtype=np.int16),
            entered=never.copy(),
            senior_from=never.copy(),
            senior_to=never.copy(),
            senior_until=np.full(n, -1, dtype=np.int32),
            kept_until=never.copy(),
        )


def simulate(rng: np.random.Generator, book: Book, rates: Rates | None = None) -> Paths:
    """Every loan's payments, month by month over the book's calendar."""
    rates = rates or Rates()
    n, months = book.n, book.months
    habit = rng.choice(len(HABITS), n, p=HABIT_SHARES).astype(np.int8)
    habit_days = np.where(habit == SLOW, rng.integers(16, 25, n), rng.integers(2, 14, n))
    paths = Paths(
        paid=np.zeros((months, n), dtype=np.int8),
        offset=np.zeros((months, n), dtype=np.int16),
        kind=np.zeros((months, n), dtype=np.int8),
        senior_dpd=np.zeros((months, n), dtype=np.int16),
        habit=habit,
        exit_month=np.full(n, NEVER, dtype=np.int32),
        status=np.full(n, ACTIVE, dtype=np.int8),
        oldest_unpaid=np.full(n, -1, dtype=np.int32),
        case_month=np.full(n, -1, dtype=np.int32),
    )
    state = _State.start(n)
    for month in range(months):
        k = month - book.first_month
        due = (k >= 0) & (k < book.term) & (state.phase != GONE)
        _leave(rng, rates, book, state, paths, month, due)
        due &= state.phase != GONE
        _senior_blips(rng, rates, book, state, month, due)
        _onset(rng, rates, book, state, month, due)
        paid = _pay(rng, rates, state, paths, month, due, habit, habit_days)
        _settle(rng, rates, book, state, paths, month, due, paid, k)
        paths.senior_dpd[month] = _senior_days(state, month) * book.second
    return paths


# --------------------------------------------------------------------------- a month's steps


def _leave(
    rng: np.random.Generator,
    rates: Rates,
    book: Book,
    state: _State,
    paths: Paths,
    month: int,
    due: np.ndarray,
) -> None:
    """Healthy loans paid off (the month's money pays it all) or transferred out (nothing
    paid this month), inside the window only: before it, they would not be in the book."""
    if month < book.window_month:
        return
    healthy = due & (state.phase == HEALTHY) & (state.arrears == 0)
    u = rng.random(book.n)
    payoff = healthy & (u < rates.payoff)
    transfer = healthy & (u >= rates.payoff) & (u < rates.payoff + rates.transfer)
    paths.kind[month] = np.where(payoff, PAYOFF, paths.kind[month])
    paths.status[payoff] = PAID_OFF
    paths.status[transfer] = TRANSFERRED
    # A payoff still posts its money this month: the loan leaves after the month's step.
    paths.exit_month[payoff | transfer] = month
    state.phase[transfer] = GONE


def _senior_blips(
    rng: np.random.Generator, rates: Rates, book: Book, state: _State, month: int, due: np.ndarray
) -> None:
    """A first lien falling 30 (now and then 60) days behind and catching up, with no
    hardship on the second: a false alarm, which still raises the second's hazard."""
    blip = (
        due
        & book.second
        & (state.phase == HEALTHY)
        & (state.senior_from == NEVER)
        & (rng.random(book.n) < rates.senior_blip)
    )
    state.senior_from[blip] = month
    state.senior_to[blip] = month + np.where(rng.random(int(blip.sum())) < 0.3, 2, 1)
    state.senior_until[blip] = month + rates.senior_trouble_months


def _hazard(rates: Rates, book: Book, state: _State, month: int) -> np.ndarray:
    """Each loan's probability of a hardship this month."""
    base = np.where(
        ~book.second,
        rates.hardship_first_lien,
        np.where(book.heloc, rates.hardship_heloc, rates.hardship_closed_end),
    )
    collateral = np.where(
        book.cltv > 1.1, rates.deep_underwater, np.where(book.cltv > 1.0, rates.underwater, 1.0)
    )
    since_change = month - book.change_month.astype(np.int64)
    end_of_draw = (book.change_kind == END_OF_DRAW) & (since_change >= 0)
    end_of_draw &= since_change < rates.end_of_draw_months
    reset = (book.change_kind == RATE_RESET) & (since_change >= 0)
    reset &= since_change < rates.rate_reset_months
    shock = np.where(end_of_draw, rates.end_of_draw, np.where(reset, rates.rate_reset, 1.0))
    senior = np.where(month < state.senior_until, rates.senior_trouble, 1.0)
    return base * collateral * shock * senior


def _onset(
    rng: np.random.Generator, rates: Rates, book: Book, state: _State, month: int, due: np.ndarray
) -> None:
    """Hardship events among healthy loans, and the course each will take."""
    hit = due & (state.phase == HEALTHY) & (state.arrears == 0)
    hit &= rng.random(book.n) < _hazard(rates, book, state, month)
    count = int(hit.sum())
    if not count:
        return
    lost = rng.random(count) < rates.cannot_recover
    sudden = lost & (rng.random(count) < rates.sudden)
    lessen = np.where(lost, 1.0, 0.85)  # a borrower who recovers shows the signs less often

    def sign(bit: int, p: np.ndarray | float) -> np.ndarray:
        return np.where(~sudden & (rng.random(count) < p * lessen), bit, 0)

    senior_p = np.where(lost, rates.senior, rates.senior_recovers) * book.second[hit]
    signs = (
        sign(DRIFT, rates.drift)
        | sign(RETURNS, rates.returns)
        | sign(SHORT, rates.short)
        | sign(SENIOR, senior_p)
    )
    warning = np.where(sudden, 0, rng.integers(2, 5, count))
    state.path[hit] = np.where(lost, CANNOT_RECOVER, RECOVERS)
    state.signs[hit] = signs
    state.warning_left[hit] = warning
    state.warning_month[hit] = 0
    state.drift_step[hit] = rng.uniform(6, 10, count)
    state.phase[hit] = np.where(sudden, DELINQUENT, WARNING)
    state.entered[hit] = np.where(sudden, month, NEVER)
    # The first lien falls behind during the warning or as the second stops; for a
    # borrower who recovers, only for a month or two.
    with_senior = (signs & SENIOR) > 0
    senior_from = month + rng.integers(0, warning + 1)
    senior_to = np.where(lost, NEVER, senior_from + rng.integers(1, 3, count))
    ids = np.flatnonzero(hit)[with_senior]
    state.senior_from[ids] = senior_from[with_senior]
    state.senior_to[ids] = senior_to[with_senior]


def _pay(
    rng: np.random.Generator,
    rates: Rates,
    state: _State,
    paths: Paths,
    month: int,
    due: np.ndarray,
    habit: np.ndarray,
    habit_days: np.ndarray,
) -> np.ndarray:
    """The month's money: how many installments, how many days after the due date, and in
    what shape. Returns the installments paid per loan."""
    n = len(due)
    usual = _habit_offset(rng, habit, habit_days)
    u, v = rng.random(n), rng.random(n)
    healthy, warning = state.phase == HEALTHY, state.phase == WARNING
    delinquent = state.phase == DELINQUENT
    owed = state.arrears.astype(np.int16) + 1
    leaving = paths.kind[month] == PAYOFF

    # Healthy: pays what is owed (catching up after a slip), or slips a month.
    slip = healthy & (state.arrears == 0) & ~leaving & (u < rates.slip)
    paid = np.where(healthy & ~slip, owed, 0)
    # Warning: still pays, later each month when drifting.
    paid = np.where(warning, owed, paid)
    drifting = warning & ((state.signs & DRIFT) > 0)
    drifted = np.maximum(usual, 0) + (state.warning_month + 1) * state.drift_step
    offset = np.where(drifting, np.minimum(drifted, 28).astype(np.int16), usual)
    # Delinquent: the first month pays nothing; then nothing, one, or everything owed.
    paid = np.where(delinquent, _behind(rates, state, month, u, owed), paid)
    offset = np.where(delinquent, rng.integers(1, 22, n), offset)

    returns, short = (state.signs & RETURNS) > 0, (state.signs & SHORT) > 0
    troubled = (warning | delinquent) & (paid > 0)
    kind = np.full(n, PLAIN, dtype=np.int8)
    kind = np.where(troubled & short & (v < 0.45), SPLIT, kind)
    kind = np.where(troubled & returns & (v >= 0.55), RETURNED, kind)
    kind = np.where(delinquent & (paid == 0) & returns & (v < 0.35), BOUNCED, kind)
    noise = healthy & (paid > 0)
    kind = np.where(noise & (v < rates.returned_noise), RETURNED, kind)
    kind = np.where(noise & (v > 1 - rates.short_noise), SPLIT, kind)

    paid = np.where(due, paid, 0)
    paths.paid[month] = paid
    paths.offset[month] = np.where(due, offset, 0)
    paths.kind[month] = np.where(leaving, PAYOFF, np.where(due, kind, PLAIN))
    return paid


def _habit_offset(
    rng: np.random.Generator, habit: np.ndarray, habit_days: np.ndarray
) -> np.ndarray:
    """Days after the due date a healthy borrower pays this month (negative: before it)."""
    n = len(habit)
    jitter = rng.integers(-3, 4, n)
    early = -rng.integers(0, 8, n)
    # An on-time payer is now and then a few days late, still inside the grace period.
    now_and_then = np.where(rng.random(n) < 0.06, rng.integers(1, 6, n), early)
    offset = np.select(
        [habit == ON_TIME, habit == AUTOPAY, habit == GRACE],
        [now_and_then, np.zeros(n, dtype=np.int64), np.clip(habit_days + jitter, 1, 15)],
        np.clip(habit_days + jitter, 16, 27),
    )
    return offset.astype(np.int16)


def _behind(rates: Rates, state: _State, month: int, u: np.ndarray, owed: np.ndarray) -> np.ndarray:
    """Installments a delinquent borrower pays this month: none in the month it stops;
    then none, one (staying as far behind) or all it owes, as its path has it."""
    deep = state.arrears >= 3
    lost = state.path == CANNOT_RECOVER
    none = np.select(
        [lost & deep, lost],
        [rates.deep_pays_none, rates.behind_pays_none],
        rates.recovering_pays_none,
    )
    one = np.select(
        [lost & deep, lost],
        [rates.deep_pays_one, rates.behind_pays_one],
        rates.recovering_pays_one,
    )
    paid = np.where(u < none, 0, np.where(u < none + one, 1, owed))
    return np.where(state.entered == month, 0, paid)


def _settle(
    rng: np.random.Generator,
    rates: Rates,
    book: Book,
    state: _State,
    paths: Paths,
    month: int,
    due: np.ndarray,
    paid: np.ndarray,
    k: np.ndarray,
) -> None:
    """The month's end: arrears, the next phase, loss-mitigation cases, charge-offs."""
    state.arrears = (state.arrears + due - paid).astype(np.int16)
    in_warning = due & (state.phase == WARNING)
    state.warning_month[in_warning] += 1
    state.warning_left[in_warning] -= 1
    ends = in_warning & (state.warning_left == 0)
    back = ends & (state.path == RECOVERS) & (rng.random(book.n) < rates.false_alarm)
    _recover(state, back, month)
    stops = ends & ~back
    state.phase[stops] = DELINQUENT
    state.entered[stops] = month + 1

    caught_up = due & (state.phase == DELINQUENT) & (state.arrears == 0)
    caught_up &= state.entered < month
    _recover(state, caught_up, month)

    opens = due & (state.phase == DELINQUENT) & (state.arrears == 2) & (paths.case_month < 0)
    opens &= rng.random(book.n) < rates.loss_mit_case
    paths.case_month[opens] = month

    gone = due & (state.arrears >= CHARGE_OFF_INSTALLMENTS)
    kept = gone & (rng.random(book.n) < rates.kept_active)
    paths.status[gone] = np.where(book.second[gone], CHARGED_OFF, FORECLOSURE)
    paths.status[kept] = ACTIVE
    state.kept_until[kept] = month + rng.integers(*rates.kept_months, int(kept.sum()))
    released = state.kept_until == month
    paths.status[released] = np.where(book.second[released], CHARGED_OFF, FORECLOSURE)
    paths.oldest_unpaid[gone] = (k - state.arrears + 1)[gone]
    paths.exit_month[gone] = month
    paid_off = paths.kind[month] == PAYOFF
    state.phase[gone | paid_off] = GONE


def _recover(state: _State, loans: np.ndarray, month: int) -> None:
    """Back to normal: no hardship, no signs; a first lien still behind catches up too."""
    state.phase[loans] = HEALTHY
    state.path[loans] = NO_PATH
    state.signs[loans] = 0
    state.entered[loans] = NEVER
    behind = loans & (state.senior_to > month + 1)
    state.senior_to[behind] = month + 1


def _senior_days(state: _State, month: int) -> np.ndarray:
    """The first lien's days past due at the month's end: 30 a month behind, up to 180."""
    behind = (month >= state.senior_from) & (month < state.senior_to)
    months_behind = month - state.senior_from.astype(np.int64) + 1
    return np.where(behind, np.minimum(30 * months_behind, 180), 0).astype(np.int16)
