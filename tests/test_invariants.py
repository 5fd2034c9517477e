"""Invariants of the pure transforms on generated frames of a few to a few dozen loans.

- the review queue (``transforms.flags``): the capacity cuts the top of the queue order
  and drops nothing; the tier never falls as days past due rise; the reasons are the
  signals found, and a loan flagged below 30 days past due has at least one;
- the hardship options (``transforms.options``, bundled catalogue): one row per loan per
  option, the eligible ranked 1..n in the catalogue's order, the others unranked; a loan
  in an open case and a current loan whose only sign is being underwater are offered
  nothing but the case and the referrals; a repayment plan's installments stay within
  150 % of each month's payment, scheduled changes included, and repay the arrears;
- the review cases and decisions (``transforms.cases``): night after night, one open case
  a loan at most, the log replayed gives the cases, events follow the tiers; promises,
  holds and the call list against plain-Python readings of their docstrings; decisions
  made after a night change nothing in it.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime, time, timedelta
from decimal import Decimal as D

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import (
    CATALOGUE,
    POLICY,
    decided,
    decision,
    features,
    flags,
    loss_mit_cases,
    option_inputs,
    payment_changes,
    payments_frame,
)
from transforms import cases
from transforms.contract import (
    BUCKET_LOWER_DAYS,
    BUCKETS,
    CARE_FLAGS,
    LOSS_MIT_CASE_TYPES,
    OCCUPANCIES,
    PRODUCTS,
    SIGNALS,
    TIERS,
)
from transforms.flags import WARNING_SIGNALS, Policy, risk_flags, signals
from transforms.letters import LETTER_SCHEMA
from transforms.options import evaluate

AS_OF = date(2026, 11, 20)
CHECKED = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Days past due: every tier boundary, and anything up to 400.
DAYS = st.one_of(
    st.sampled_from([0, 1, 29, 30, 59, 60, 89, 90, 119, 120, 179, 180]), st.integers(0, 400)
)


def cents(low: int, high: int) -> st.SearchStrategy[D]:
    return st.integers(low, high).map(lambda c: D(c) / 100)


def bucket_of(days: int) -> str:
    return BUCKETS[max(k for k, low in enumerate(BUCKET_LOWER_DAYS) if days >= low)]


# --------------------------------------------------------------------------- the review queue


@st.composite
def loan_features(draw) -> dict:
    """Overrides of the features builder: any mix of signals, care flags and lien positions."""
    days = draw(DAYS)
    installment = draw(cents(1_000, 300_000))
    returns = draw(st.integers(0, 3))
    change = draw(st.none() | st.sampled_from([D("1.00"), D("1.19"), D("1.20"), D("2.00")]))
    return {
        "lien_position": draw(st.sampled_from([1, 2, 2, 2])),
        "occupancy": draw(st.sampled_from(OCCUPANCIES)),
        "days_past_due": days,
        "bucket": bucket_of(days),
        "prior_bucket": draw(st.none() | st.sampled_from(BUCKETS)),
        "amount_past_due": installment * ((days + 29) // 30),
        "suspense_amount": draw(st.sampled_from([D("0.00"), D("0.01"), D("150.00")])),
        "installment_amount": installment,
        "last_payment_short": draw(st.none() | st.booleans()),
        "senior_days_past_due": draw(st.none() | st.integers(0, 120)),
        "returns_in_window": returns,
        "last_return_date": AS_OF - timedelta(days=20) if returns else None,
        "next_change_amount": None
        if change is None
        else (installment * change).quantize(D("0.01")),
        "next_change_date": None if change is None else AS_OF + timedelta(days=40),
        "days_late": draw(st.lists(st.integers(0, 60), max_size=3)),
        "senior_lien_balance": draw(
            st.none() | st.sampled_from([D("0.00"), D("300000.00"), D("360000.00")])
        ),
        "property_value": draw(st.none() | st.sampled_from([D("400000.00"), D("250000.00")])),
        **{
            care: draw(st.booleans())
            for care in ("bankruptcy", "deceased", "cease_communication", "open_loss_mitigation")
        },
    }


LOANS = st.lists(loan_features(), min_size=1, max_size=30)


def queue_key(tier: str, score: D, days: int, loan_id: str) -> tuple:
    """The rules' order: the early-outreach queue (below 90 days) by worse tier, higher
    score, more days past due, then loan id; then the default list, the fewest days first."""
    if days >= 90:
        return 1, 0, D(0), days, loan_id
    return 0, -TIERS.index(tier), -score, -days, loan_id


@CHECKED
@given(loans=LOANS, capacity=st.integers(0, 35))
def test_the_capacity_cuts_the_top_of_the_queue_and_drops_nothing(loans, capacity):
    """At most ``review_capacity`` loans are in the queue, and they are its first ones;
    the loans cut keep their rows, the same as with room for all."""
    frame = features(*loans)
    policy = Policy(weights=POLICY.weights, review_capacity=capacity)
    found = signals(frame, policy)
    flagged = risk_flags(frame, found, AS_OF, policy).sort("queue_rank")
    roomy = Policy(weights=POLICY.weights, review_capacity=1_000)
    assert flagged.drop("in_queue").equals(
        risk_flags(frame, found, AS_OF, roomy).sort("queue_rank").drop("in_queue")
    )
    n = flagged.height
    assert flagged["queue_rank"].to_list() == list(range(1, n + 1))
    outreach = int((flagged["days_past_due"] < 90).sum())
    assert flagged["in_queue"].to_list() == [
        rank <= min(capacity, outreach) for rank in range(1, n + 1)
    ]
    keys = [
        queue_key(*row)
        for row in flagged.select("tier", "score", "days_past_due", "loan_id").rows()
    ]
    assert keys == sorted(keys)


@CHECKED
@given(loan=loan_features(), days=st.lists(DAYS, min_size=2, max_size=12, unique=True))
def test_the_tier_rises_never_falls_with_days_past_due(loan, days):
    """The same second lien at more days past due is in the same tier or a worse one,
    and that tier is the contract's: 90+, 60-89, 30-59, early warning below."""
    days = sorted(days)
    frame = features(*[dict(loan, lien_position=2, days_past_due=d) for d in days])
    tiers = dict(
        risk_flags(frame, signals(frame, POLICY), AS_OF, POLICY).select("loan_id", "tier").rows()
    )
    ranks = [TIERS.index(tiers[f"L{k}"]) if f"L{k}" in tiers else -1 for k in range(len(days))]
    assert ranks == sorted(ranks)
    for d, rank in zip(days, ranks, strict=True):
        if d > POLICY.grace_days:
            assert rank == (3 if d >= 90 else 2 if d >= 60 else 1 if d >= 30 else 0), d
        else:
            assert rank in (-1, 0)  # inside the grace period: early warning only with a signal


@CHECKED
@given(loans=LOANS)
def test_reasons_are_the_signals_found_and_early_warning_has_one(loans):
    """Flagged: every second lien past the grace period, and every one inside it with a
    warning signal (not being underwater, nor a bucket moved inside 1-29); first liens never. A loan's reasons (and their texts) are its signals in the contract's
    order, and its score their weights plus half a point a day past due. Below 30 days a
    loan is flagged only with a reason; from 30 days the tier is set by the days alone,
    so a loan may be flagged there with no reason code."""
    frame = features(*loans)
    found = signals(frame, POLICY)
    flagged = risk_flags(frame, found, AS_OF, POLICY)
    per_loan = {
        loan_id: (codes, texts)
        for loan_id, codes, texts in found.group_by("loan_id").agg("signal", "detail").rows()
    }
    expected = {
        row["loan_id"]
        for row in frame.iter_rows(named=True)
        if row["lien_position"] == 2
        and (
            row["days_past_due"] > POLICY.grace_days
            or set(per_loan.get(row["loan_id"], ([], []))[0]) & set(WARNING_SIGNALS)
        )
    }
    assert set(flagged["loan_id"]) == expected
    assert flagged["loan_id"].is_unique().all()
    for row in flagged.iter_rows(named=True):
        codes, texts = per_loan.get(row["loan_id"], ([], []))
        assert row["reasons"] == codes == sorted(codes, key=SIGNALS.index)
        assert row["reason_details"] == texts
        if row["tier"] == "early_warning":
            assert row["reasons"], row
        points = (
            sum((POLICY.weights[c] for c in codes), D(0))
            + row["days_past_due"] * POLICY.weight_per_day_past_due
        )
        assert row["score"] == points


# --------------------------------------------------------------------------- hardship options


@st.composite
def option_loan(draw) -> dict:
    """Overrides of the options inputs builder: a flagged second lien (or first) of any kind."""
    days = draw(DAYS)
    behind = draw(st.integers(0, 8))
    installment = draw(cents(200, 300_000))
    originated = draw(st.dates(date(2000, 1, 1), date(2026, 10, 1)))
    return {
        "tier": draw(st.sampled_from(TIERS)),
        "reasons": draw(st.lists(st.sampled_from(SIGNALS), unique=True, max_size=3)),
        "care": draw(st.lists(st.sampled_from(CARE_FLAGS), unique=True, max_size=2)),
        "days_past_due": days,
        "installments_behind": behind,
        "amount_past_due": installment * behind + draw(cents(0, 99)),
        "installment_amount": installment,
        "lien_position": draw(st.sampled_from([1, 2, 2])),
        "product": draw(st.sampled_from(PRODUCTS)),
        "occupancy": draw(st.sampled_from(OCCUPANCIES)),
        "property_state": draw(st.sampled_from(["CA", "TX", "NV"])),
        "origination_date": originated,
        "first_payment_date": originated + timedelta(days=45),
        "term_months": draw(st.sampled_from([60, 120, 180, 360])),
        "current_balance": draw(cents(100_000, 10_000_000)),
        "property_value": draw(st.none() | st.sampled_from([D("150000.00"), D("400000.00")])),
        "senior_lien_balance": draw(
            st.none() | st.sampled_from([D("0.00"), D("250000.00"), D("390000.00")])
        ),
    }


@st.composite
def loss_mit_feed(draw, loans: int) -> pl.DataFrame:
    """Past and open loss-mitigation cases of some of the loans L0.. (closed or still open)."""
    rows = []
    for _ in range(draw(st.integers(0, 4))):
        opened = AS_OF - timedelta(days=draw(st.integers(0, 900)))
        length = draw(st.none() | st.integers(0, 400))
        rows.append(
            (
                f"L{draw(st.integers(0, loans - 1))}",
                draw(st.sampled_from(LOSS_MIT_CASE_TYPES)),
                opened,
                None if length is None else opened + timedelta(days=length),
            )
        )
    return loss_mit_cases(*rows)


@settings(CHECKED, max_examples=25)
@given(data=st.data(), loans=st.lists(option_loan(), min_size=1, max_size=12))
def test_option_ranks_are_one_to_n_among_the_eligible(data, loans):
    """One row per loan per option; a loan's eligible options are ranked 1..n in the
    catalogue's order for its tier (then by code); the others have no rank and no terms,
    and their rationale does not say they fit."""
    frame = option_inputs(*loans)
    found = evaluate(frame, data.draw(loss_mit_feed(len(loans))), CATALOGUE, AS_OF)
    options = CATALOGUE.by_code()
    assert found.height == len(loans) * len(options)
    assert found.select("loan_id", "option_code").is_unique().all()
    assert found["eligible"].null_count() == 0
    tier = dict(frame.select("loan_id", "tier").rows())
    for (loan_id,), mine in found.group_by("loan_id"):
        assert sorted(mine["option_code"]) == sorted(options)
        eligible = mine.filter(pl.col("eligible")).sort("rank")
        assert eligible["rank"].to_list() == list(range(1, eligible.height + 1))
        order = [(options[code].rank_for(tier[loan_id]), code) for code in eligible["option_code"]]
        assert order == sorted(order)
        assert eligible["rationale"].str.starts_with("Fits: ").all()
        other = mine.filter(~pl.col("eligible"))
        for column in (
            "rank",
            "plan_months",
            "plan_payment",
            "plan_last_payment",
            "plan_installments",
            "amount",
            "terms",
        ):
            assert other[column].null_count() == other.height, column
        assert not other["rationale"].str.starts_with("Fits").any()
    assert found.filter(pl.col("option_code") == "housing_counseling")["eligible"].all()
    assert not found.filter(pl.col("option_code") == "ca_mortgage_relief")["eligible"].any()


@settings(CHECKED, max_examples=25)
@given(data=st.data(), loans=st.lists(option_loan(), min_size=1, max_size=12))
def test_an_open_case_or_underwater_alone_gets_no_competing_offer(data, loans):
    """A loan with an open loss-mitigation case fits only the option that case is (under
    way) and the referrals; a current loan with no sign but being underwater, and no open
    case, fits only the referrals."""
    referrals = {o.code for o in CATALOGUE.option if o.referral}
    under_way_for = {case_type: o.code for o in CATALOGUE.option for case_type in o.case_types}
    frame = option_inputs(*loans)
    feed = data.draw(loss_mit_feed(len(loans)))
    found = evaluate(frame, feed, CATALOGUE, AS_OF)
    open_now = cases.open_cases(feed, AS_OF)
    for loan_id, days, reasons in frame.select("loan_id", "days_past_due", "reasons").rows():
        fits = set(found.filter((pl.col("loan_id") == loan_id) & pl.col("eligible"))["option_code"])
        mine = open_now.filter(pl.col("loan_id") == loan_id)["case_type"].to_list()
        if mine:
            under_way = {under_way_for[t] for t in mine if t in under_way_for}
            assert under_way <= fits
            assert fits <= under_way | referrals
        elif days == 0 and set(reasons) <= {"underwater"}:
            assert fits <= referrals


@st.composite
def scheduled_changes(draw, loans: int) -> pl.DataFrame:
    """Scheduled payment changes of some of the loans L0.., on the first of a month from
    November 2026 (already in tonight's payment) to a year on."""
    keys = draw(
        st.lists(st.tuples(st.integers(0, loans - 1), st.integers(0, 13)), unique=True, max_size=8)
    )
    return payment_changes(
        *[(f"L{loan}", month_start(10 + m), draw(cents(100, 400_000))) for loan, m in keys]
    )


def month_start(months: int) -> date:
    """The first of the month ``months`` after January 2026."""
    return date(2026 + months // 12, months % 12 + 1, 1)


@settings(CHECKED, max_examples=25)
@given(data=st.data(), loans=st.lists(option_loan(), min_size=1, max_size=8))
def test_a_repayment_plan_follows_the_payment_changes(data, loans):
    """Each installment is that month's regular payment (the latest change after tonight on
    or before its due date, else tonight's) plus the same extra, the last taking the odd
    cents; each at most 150 % of that month's payment; the extras repay the arrears."""
    frame = option_inputs(*loans)
    changes = data.draw(scheduled_changes(len(loans)))
    found = evaluate(frame, loss_mit_cases(), CATALOGUE, AS_OF, payment_changes=changes).filter(
        pl.col("plan_installments").is_not_null()
    )
    for row in found.iter_rows(named=True):
        loan = frame.filter(pl.col("loan_id") == row["loan_id"]).row(0, named=True)
        mine = changes.filter(
            (pl.col("loan_id") == row["loan_id"]) & (pl.col("effective_due_date") > AS_OF)
        ).sort("effective_due_date")
        regulars = []
        for k in range(row["plan_months"]):
            first = month_start(11 + k)  # the plan's months run from December
            due = first.replace(
                day=min(
                    loan["first_payment_date"].day, calendar.monthrange(first.year, first.month)[1]
                )
            )
            set_by = mine.filter(pl.col("effective_due_date") <= due)["scheduled_payment"]
            regulars.append(set_by[-1] if set_by.len() else loan["installment_amount"])
        paid = row["plan_installments"]
        extras = [p - r for p, r in zip(paid, regulars, strict=True)]
        assert len(set(extras[:-1])) <= 1 and extras[-1] >= extras[0] > 0
        assert sum(extras) == loan["amount_past_due"] == row["amount"]
        assert all(p <= r * D("1.5") for p, r in zip(paid, regulars, strict=True))


# --------------------------------------------------------------------------- review cases


CASE_LOANS = ("A", "B", "C", "D")
NIGHTS = st.lists(
    st.tuples(
        st.integers(1, 40), st.dictionaries(st.sampled_from(CASE_LOANS), st.sampled_from(TIERS))
    ),
    min_size=1,
    max_size=8,
)


@CHECKED
@given(nights=NIGHTS)
def test_cases_night_after_night(nights):
    """Each night from the log as it stood before it: the events follow the tiers (opened,
    escalated, de-escalated, resolved, or none for the same tier), a rerun of the night
    gives the same events, the log replayed gives the cases the night returned, a loan
    has one open case at most (at tonight's tier, exactly when it is flagged), and a
    resolved case stays resolved."""
    log = pl.DataFrame(schema=cases.EVENT_SCHEMA)
    night = AS_OF
    for gap, tiers in nights:
        night += timedelta(days=gap)
        before = cases.case_state(log)
        open_before = before.filter(pl.col("status") == "open")
        tonight = flags(**tiers)
        after, events = cases.case_events(open_before, tonight, night)
        rerun = cases.case_events(open_before, tonight, night)
        assert rerun[0].equals(after) and rerun[1].equals(events)

        was = dict(open_before.select("loan_id", "tier").rows())
        expected = {}
        for loan in CASE_LOANS:
            old, new = was.get(loan), tiers.get(loan)
            if old is None and new is not None:
                expected[loan] = "opened"
            elif old is not None and new is None:
                expected[loan] = "resolved"
            elif old is not None and TIERS.index(new) != TIERS.index(old):
                expected[loan] = (
                    "escalated" if TIERS.index(new) > TIERS.index(old) else "de-escalated"
                )
        assert events["loan_id"].is_unique().all()
        assert dict(events.select("loan_id", "event").rows()) == expected

        log = pl.concat([log, events])
        state = cases.case_state(log)
        replayed = state.filter(pl.col("case_id").is_in(after["case_id"].implode()))
        assert after.sort("case_id").equals(replayed.sort("case_id"))
        open_now = state.filter(pl.col("status") == "open")
        assert open_now["loan_id"].is_unique().all()
        assert dict(open_now.select("loan_id", "tier").rows()) == tiers
        assert open_now["opened_date"].max() is None or open_now["opened_date"].max() <= night
        resolved = before.filter(pl.col("status") == "resolved")
        assert resolved.join(state, on=list(cases.CASE_SCHEMA), how="anti").is_empty()
        assert state["case_id"].is_unique().all()


# --------------------------------------------------------------------------- decisions


START = date(2026, 11, 1)


def moment(day: int, minute: int) -> datetime:
    return datetime.combine(START + timedelta(days=day), time(8)) + timedelta(minutes=minute)


@st.composite
def payments(draw) -> list[tuple]:
    """A ledger as the ingest lets it in: payments on loans A and B, each reversed at most
    once, for its whole amount, on or after its own date."""
    rows = []
    for k in range(draw(st.integers(0, 10))):
        loan, day = draw(st.sampled_from("AB")), START + timedelta(days=draw(st.integers(0, 35)))
        amount = draw(cents(1, 60_000))
        rows.append((f"T{k}", loan, day, amount, "payment", None))
        if draw(st.integers(0, 3)) == 0:
            rows.append(
                (
                    f"R{k}",
                    loan,
                    day + timedelta(days=draw(st.integers(0, 10))),
                    amount,
                    "reversal",
                    f"T{k}",
                )
            )
    return rows


@st.composite
def promises(draw) -> list[dict]:
    made = [
        (draw(st.sampled_from("AB")), draw(st.integers(0, 30)), draw(st.integers(0, 600)))
        for _ in range(draw(st.integers(0, 5)))
    ]
    return [
        decision(
            "promise",
            loan,
            moment(day, minute),
            promise_date=START + timedelta(days=day + draw(st.integers(0, 15))),
            promise_amount=draw(cents(1, 80_000)),
        )
        for loan, day, minute in made
    ]


@CHECKED
@given(ledger=payments(), made=promises(), night=st.integers(0, 50))
def test_promise_status_follows_the_payments(ledger, made, night):
    """Paid toward a promise: the loan's payments posted from the day it was made through
    the promise date and by the night, less those reversed by the night. Kept once that
    reaches the amount, else broken after the promise date, else pending; promises made
    after the night are not there."""
    as_of = START + timedelta(days=night)
    found = cases.promise_status(decided(*made), payments_frame(*ledger), as_of)
    reversed_ = {
        target for _, _, day, _, kind, target in ledger if kind == "reversal" and day <= as_of
    }
    expected = {}
    for p in made:
        if p["made_at"].date() > as_of:
            continue
        toward = sum(
            (
                amount
                for txn, loan, day, amount, kind, _ in ledger
                if kind == "payment"
                and loan == p["loan_id"]
                and txn not in reversed_
                and p["made_at"].date() <= day <= min(p["promise_date"], as_of)
            ),
            D("0.00"),
        )
        status = (
            "kept"
            if toward >= p["promise_amount"]
            else "broken"
            if p["promise_date"] < as_of
            else "pending"
        )
        expected[p["decision_id"]] = (toward, status)
    assert {
        d: (paid, status)
        for d, paid, status in found.select("decision_id", "paid_toward", "status").rows()
    } == expected
    assert found.height == len(expected)
    assert set(found["status"]) <= set(cases.PROMISE_STATUSES)


LETTER_TEMPLATES = {"X1": "early_warning", "X2": "heloc_counseling", "X3": "early_warning"}


@st.composite
def holds_and_releases(draw) -> list[dict]:
    rows = []
    for _ in range(draw(st.integers(0, 8))):
        kind, loan = draw(st.sampled_from(["hold", "release"])), draw(st.sampled_from("AB"))
        letter = draw(st.sampled_from([None, "X1", "X2", "X3"]))
        rows.append(
            decision(
                kind,
                loan,
                moment(draw(st.integers(0, 6)), draw(st.integers(0, 3)) * 60),
                letter_id=letter,
                template=LETTER_TEMPLATES.get(letter) if kind == "hold" else None,
                by=draw(st.sampled_from(["ann", "bob"])),
            )
        )
    return rows


TONIGHTS_LETTERS = pl.DataFrame(
    [
        {
            "letter_id": letter,
            "as_of_date": START,
            "loan_id": loan,
            "borrower_id": "B" + loan,
            "template": template,
            "language": "en",
            "status": status,
            "suppression_reason": "deceased" if status == "suppressed" else None,
        }
        for letter, loan, template, status in (
            ("X1", "A", "early_warning", "generated"),
            ("X2", "A", "heloc_counseling", "generated"),
            ("X3", "B", "early_warning", "generated"),
            ("X4", "B", "heloc_counseling", "suppressed"),
            ("X5", "A", "early_warning", "generated"),
        )
    ],
    schema=LETTER_SCHEMA,
)


@CHECKED
@given(log=holds_and_releases(), night=st.integers(0, 7))
def test_holds_in_force_and_the_letters_they_stop(log, night):
    """A hold is in force from the day it is made until a later release on the loan (of
    all its holds, or of that letter's); a letter is suppressed when it was already, or a
    hold in force names its loan, the letter itself, or the loan and the letter's
    template. A letter already suppressed keeps its reason; columns and order are kept."""
    as_of = START + timedelta(days=night)
    made = [d for d in log if d["made_at"].date() <= as_of]
    in_force = [
        h
        for h in made
        if h["kind"] == "hold"
        and not any(
            r["kind"] == "release"
            and r["loan_id"] == h["loan_id"]
            and r["made_at"] > h["made_at"]
            and r["letter_id"] in (None, h["letter_id"])
            for r in made
        )
    ]
    holds = cases.active_holds(decided(*log), as_of)
    assert sorted(
        holds.select("loan_id", "letter_id", "template", "held_by", "held_on").rows(), key=repr
    ) == sorted(
        (
            (h["loan_id"], h["letter_id"], h["template"], h["made_by"], h["made_at"].date())
            for h in in_force
        ),
        key=repr,
    )

    out = cases.apply_holds(TONIGHTS_LETTERS, holds)
    assert out.columns == TONIGHTS_LETTERS.columns
    assert out["letter_id"].to_list() == TONIGHTS_LETTERS["letter_id"].to_list()
    for letter, now in zip(
        TONIGHTS_LETTERS.iter_rows(named=True), out.iter_rows(named=True), strict=True
    ):
        held = [
            h
            for h in in_force
            if h["loan_id"] == letter["loan_id"]
            and (
                h["letter_id"] is None
                or h["letter_id"] == letter["letter_id"]
                or h["template"] == letter["template"]
            )
        ]
        if letter["status"] == "suppressed":
            assert now == letter
        elif held:
            assert now["status"] == "suppressed"
            assert now["suppression_reason"].startswith("held by analyst ")
        else:
            assert now == letter


@st.composite
def call_candidates(draw) -> pl.DataFrame:
    """Flagged loans A..F with their live-contact dates around the night (or none)."""
    loans = "ABCDEF"
    ranks = draw(st.permutations(range(1, len(loans) + 1)))
    due = [draw(st.none() | st.integers(-5, 5)) for _ in loans]
    return pl.DataFrame(
        {
            "loan_id": list(loans),
            "queue_rank": list(ranks),
            "live_contact_due_date": [
                None if d is None else AS_OF + timedelta(days=d) for d in due
            ],
            "delinquency_start_date": [
                None if d is None else AS_OF + timedelta(days=d - 36) for d in due
            ],
        }
    )


@CHECKED
@given(
    candidates=call_candidates(),
    contacts=st.lists(st.tuples(st.sampled_from("ABCDEF"), st.integers(-60, 3)), max_size=8),
)
def test_the_call_list(candidates, contacts):
    """Listed: the loans whose live-contact date is by tomorrow and with no contact made
    by the night since their delinquency began; overdue, due today, due tomorrow, each in
    queue order; last_contact_date the latest contact made by the night."""
    log = [
        decision("contact", loan, datetime.combine(AS_OF + timedelta(days=day), time(10)))
        for loan, day in contacts
    ]
    listed = cases.call_list(candidates, decided(*log), AS_OF)
    last = {}
    for loan, day in contacts:
        if day <= 0:
            last[loan] = max(
                last.get(loan, AS_OF + timedelta(days=day)), AS_OF + timedelta(days=day)
            )
    expected = []
    for row in candidates.iter_rows(named=True):
        due, loan = row["live_contact_due_date"], row["loan_id"]
        if due is None or due > AS_OF + timedelta(days=1):
            continue
        if loan in last and last[loan] >= row["delinquency_start_date"]:
            continue
        status = "overdue" if due < AS_OF else "due today" if due == AS_OF else "due tomorrow"
        expected.append(
            (cases.CALL_STATUSES.index(status), row["queue_rank"], loan, status, last.get(loan))
        )
    expected.sort()
    assert listed.select("loan_id", "call_status", "last_contact_date").rows() == [
        e[2:] for e in expected
    ]


@CHECKED
@given(
    ledger=payments(),
    made=promises(),
    log=holds_and_releases(),
    later=st.lists(
        st.tuples(st.sampled_from(cases.DECISION_KINDS), st.sampled_from("AB"), st.integers(1, 20)),
        min_size=1,
        max_size=6,
    ),
)
def test_decisions_after_the_night_change_nothing_in_it(ledger, made, log, later):
    """A rerun of a night is unaffected by decisions made after it: the promises, holds,
    applications and call list of the night are the same with or without them."""
    as_of = START + timedelta(days=10)
    earlier = [d for d in [*made, *log] if d["made_at"].date() <= as_of]
    afterwards = [
        decision(
            kind,
            loan,
            datetime.combine(as_of + timedelta(days=day), time(9)),
            promise_date=as_of + timedelta(days=day + 3) if kind == "promise" else None,
            promise_amount=D("100.00") if kind == "promise" else None,
        )
        for kind, loan, day in later
    ]
    feed = pl.DataFrame(schema={"loan_id": pl.String, "opened_date": pl.Date})
    candidates = pl.DataFrame(
        {
            "loan_id": ["A", "B"],
            "queue_rank": [1, 2],
            "live_contact_due_date": [as_of, as_of - timedelta(days=2)],
            "delinquency_start_date": [as_of - timedelta(days=36), as_of - timedelta(days=38)],
        }
    )
    ledger_frame = payments_frame(*ledger)

    def night(decisions: list[dict]) -> tuple:
        frame = decided(*decisions)
        return (
            cases.promise_status(frame, ledger_frame, as_of),
            cases.active_holds(frame, as_of),
            cases.open_applications(frame, feed, as_of),
            cases.call_list(candidates, frame, as_of),
        )

    for alone, with_later in zip(night(earlier), night([*earlier, *afterwards]), strict=True):
        assert alone.equals(with_later)
