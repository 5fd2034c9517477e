"""Letters: decide tonight's letters, render each as HTML and PDF, check it, write the manifest.

The decision is :func:`transforms.letters.decide`. Rendering takes three steps per
letter: the letter's jinja2 template (``templates/letters/<language>/<template>.txt.j2``)
gives its text as blocks; the text is checked against the compliance checklist
(``templates/letters/checklist.toml``); the blocks go to the HTML layout (jinja2, escaped)
and, as JSON data, to the Typst layout for the PDF (no borrower text is ever read as
markup). Files are written under a temporary name and renamed, so no half-written
letter is ever in the output or the manifest. Rendering fans out over processes.
"""

from __future__ import annotations

import calendar
import csv
import io
import json
import os
import re
import tomllib
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from decimal import Decimal
from functools import cache
from itertools import groupby
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import jinja2
import polars as pl

from lienwatch.faults import fault_point
from lienwatch.files import make_durable, write_atomic

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
if not (TEMPLATES / "letters").is_dir():  # installed wheel: templates ship inside the package
    TEMPLATES = Path(__file__).resolve().parent / "_templates"
LETTERS = TEMPLATES / "letters"

MONTHS = {
    "en": (
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ),
    "es": (
        "enero",
        "febrero",
        "marzo",
        "abril",
        "mayo",
        "junio",
        "julio",
        "agosto",
        "septiembre",
        "octubre",
        "noviembre",
        "diciembre",
    ),
}
LABELS = {
    "en": {
        "page": "Page",
        "of": "of",
        "account": "Loan account ending in",
        "closing": "Sincerely,",
    },
    "es": {
        "page": "Página",
        "of": "de",
        "account": "Cuenta del préstamo terminada en",
        "closing": "Atentamente,",
    },
}
# The terms of an option for this loan, as (one month or payment, several).
TERMS = {
    "en": {
        "repayment_plan": (
            "a single catch-up payment of {plan_payment}: your regular payment plus the amount past due",
            "{plan_months} monthly payments of {plan_payment}, the last {plan_last_payment}",
        ),
        "forbearance": ("up to 1 month at a time", "up to {plan_months} months at a time"),
        "payment_deferral": (
            "1 missed payment ({amount}) moved to the end of the loan",
            "{plan_months} missed payments ({amount}) moved to the end of the loan",
        ),
    },
    "es": {
        "repayment_plan": (
            "un solo pago para ponerse al día de {plan_payment}: su pago regular más el monto atrasado",
            "{plan_months} pagos mensuales de {plan_payment}; el último, de {plan_last_payment}",
        ),
        "forbearance": ("hasta 1 mes a la vez", "hasta {plan_months} meses a la vez"),
        "payment_deferral": (
            "1 pago atrasado ({amount}) pasado al final del préstamo",
            "{plan_months} pagos atrasados ({amount}) pasados al final del préstamo",
        ),
    },
}
# A repayment plan of several equal installments (no payment change inside it).
EQUAL_PLAN = {
    "en": "{plan_months} monthly payments of {plan_payment}",
    "es": "{plan_months} pagos mensuales de {plan_payment}",
}
# A repayment plan of at most STREAMLINED_MONTHS that starts while the loan is under
# STREAMLINED_DAYS past due needs no full application (Fannie Mae Servicing Guide D2-3.2-02;
# Regulation X §1024.41(c)(2)(iii) lets a short-term plan be offered on an incomplete one).
STREAMLINED_MONTHS, STREAMLINED_DAYS = 6, 90
STREAMLINED_NOTE = {
    "en": "A plan of 6 months or less, like this one, needs no full application if it starts while the loan is under 90 days past due.",
    "es": "Un plan de 6 meses o menos, como este, no requiere una solicitud completa si comienza mientras el préstamo tiene menos de 90 días de atraso.",
}
# A repayment plan whose installments change with a scheduled payment change: (the terms,
# one run of equal installments, the word between runs).
PLAN_RUNS = {
    "en": (
        "{plan_months} monthly payments: {runs}, the last {plan_last_payment}",
        "{count} of {amount}",
        ", then ",
    ),
    "es": (
        "{plan_months} pagos mensuales: {runs}; el último, de {plan_last_payment}",
        "{count} de {amount}",
        ", luego ",
    ),
}


def date_text(day: date, language: str) -> str:
    month = MONTHS[language][day.month - 1]
    return (
        f"{month} {day.day}, {day.year}"
        if language == "en"
        else f"{day.day} de {month} de {day.year}"
    )


def money(value: Decimal | float | None) -> str:
    return "" if value is None else f"${Decimal(value):,.2f}"


def last4(loan_id: str) -> str:
    """The account reference a letter shows: only the last four characters."""
    return loan_id[-4:]


# --------------------------------------------------------------------------- rendering (worker side)


def _one_line(value: Any) -> Any:
    """Every value put into a letter is one line of text: a borrower's line breaks cannot
    start a heading or a list item of the block format."""
    if isinstance(value, str):
        return " ".join(value.split())
    return value


@cache
def _text_env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        finalize=_one_line,
        keep_trailing_newline=True,
    )


@cache
def _html_env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )


@cache
def checklist() -> dict:
    return tomllib.loads((LETTERS / "checklist.toml").read_text(encoding="utf-8"))


@cache
def _compiler():
    import typst

    return typst.Compiler(str(LETTERS / "letter.typ"), root=str(LETTERS), ignore_system_fonts=True)


def compose(letter: dict[str, Any]) -> dict[str, Any]:
    """The letter's document (subject, blocks, address, labels) from its template and data."""
    from transforms.letters import blocks

    language, template = letter["language"], letter["template"]
    text = (
        _text_env()
        .get_template(f"letters/{language}/{template}.txt.j2")
        .render(**letter["context"])
    )
    first, _, body = text.partition("\n")
    if not first.startswith("subject:"):
        raise ValueError(
            f"letters/{language}/{template}.txt.j2: the first line must be 'subject: ...'"
        )
    subject = " ".join(first.removeprefix("subject:").split())
    context = letter["context"]
    labels = LABELS[language]
    return {
        "title": subject,
        "subject": subject,
        "language": language,
        "servicer": context["s"],
        "labels": labels,
        "address": context["address"],
        "date_text": context["date_text"],
        "account_ref": context["loan"]["account_ref"],
        # on every page after the first: a loose page still finds its borrower and loan
        "header": page_header(context["b"]["name"], labels, context["loan"]["account_ref"]),
        "blocks": blocks(body),
    }


def page_header(name: str, labels: dict[str, str], account_ref: str) -> str:
    return f"{name} · {labels['account']} {account_ref}"


def document_text(doc: dict[str, Any]) -> str:
    """Every word the reader sees, in order (what the checklist reads)."""
    s = doc["servicer"]
    parts = [
        s["name"],
        *s["mailing_address"],
        s["team_name"],
        s["team_phone"],
        s["website"],
        *doc["address"],
        doc["date_text"],
        doc["account_ref"],
        doc["subject"],
    ]
    for b in doc["blocks"]:
        for item in b.get("items", [b]):
            parts += [item.get("lead", ""), item["text"], *item.get("notes", [])]
    parts += [doc["labels"]["closing"], s["signer_name"], s["signer_title"], s["name"]]
    parts += [doc["header"], s["address_inline"]]
    return "\n".join(p for p in parts if p)


PHONE = re.compile(r"\((\d{3})\) (\d{3}-\d{4})")


def render(letter: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Compose, check and write one letter; returns its paths and pages, or its problems."""
    from transforms.letters import check

    doc = compose(letter)
    problems = check(
        document_text(doc),
        letter["template"],
        letter["language"],
        checklist(),
        letter["checks"],
        letter["facts"],
    )
    result = {
        "letter_id": letter["letter_id"],
        "problems": problems,
        "pdf_path": None,
        "html_path": None,
        "pages": None,
    }
    if problems:
        return result
    html = _html_env().get_template("letters/layout.html.j2").render(d=doc)
    # A phone number never breaks across lines (a no-break space; cheaper than a Typst show rule).
    data = PHONE.sub("(\\1)\u00a0\\2", json.dumps(doc, ensure_ascii=False))
    # Dated the night (not the moment of rendering): a rerun writes the same bytes.
    # Untagged: the PDF is for print; the HTML beside it is the accessible version.
    pdf = _compiler().compile(
        sys_inputs={"letter": data}, timestamp=letter["timestamp"], pdf_tags=False
    )
    pdf_path, html_path = (
        folder / f"{letter['letter_id']}.pdf",
        folder / f"{letter['letter_id']}.html",
    )
    # made durable a chunk at a time, before the letters are reported as rendered (and so
    # before the warehouse records them): after a crash, a letter called generated is whole
    write_atomic(html_path, html.encode("utf-8"), durable=False)
    write_atomic(pdf_path, pdf, durable=False)
    fault_point("letters:file")
    result.update(pdf_path=str(pdf_path), html_path=str(html_path), pages=_pages(pdf))
    return result


def _pages(pdf: bytes) -> int:
    counts = [int(n) for n in re.findall(rb"/Type\s*/Pages\b[^>]*?/Count (\d+)", pdf)]
    counts += [int(n) for n in re.findall(rb"/Count (\d+)[^>]*?/Type\s*/Pages\b", pdf)]
    return max(counts) if counts else 1


def _render_chunk(letters: list[dict[str, Any]], folder: str) -> list[dict[str, Any]]:
    results = [render(letter, Path(folder)) for letter in letters]
    make_durable(
        [r[key] for r in results for key in ("pdf_path", "html_path") if r[key]], Path(folder)
    )
    return results


def render_all(
    letters: list[dict[str, Any]], folder: Path, workers: int | None = None
) -> list[dict[str, Any]]:
    """Render every letter into ``folder``, over ``workers`` processes (default: every core).
    The results come back in the order of ``letters``."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Letters of one template and language in a row: the compiler reuses their laid-out paragraphs.
    order = sorted(
        range(len(letters)), key=lambda i: (letters[i]["template"], letters[i]["language"])
    )
    ordered = [letters[i] for i in order]
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(letters) < 200:
        done = _render_chunk(ordered, str(folder))
    else:
        size = max(50, len(letters) // (workers * 4) + 1)
        chunks = [ordered[i : i + size] for i in range(0, len(ordered), size)]
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            done = [
                result
                for chunk in pool.map(_render_chunk, chunks, [str(folder)] * len(chunks))
                for result in chunk
            ]
    results: list[dict[str, Any]] = [{}] * len(letters)
    for position, result in zip(order, done, strict=True):
        results[position] = result
    return results


# --------------------------------------------------------------------------- letter data (night side)


def servicer_block(settings, language: str) -> dict[str, Any]:
    s = settings.servicer
    spanish = language == "es"
    return {
        "name": s.name,
        "mailing_address": list(s.mailing_address),
        "address_inline": ", ".join(s.mailing_address),
        "team_name": s.team_name_es if spanish else s.team_name,
        "signer_name": s.signer_name,
        "signer_title": s.signer_title_es if spanish else s.signer_title,
        "team_phone": s.team_phone,
        "team_hours": s.team_hours_es if spanish else s.team_hours,
        "website": s.website,
        "email": s.email,
    }


def days_behind_at_next_due(loan: dict[str, Any]) -> int | None:
    """Days past due on the loan's next due date if nothing is paid before it: where the
    loan stands when the first payment of a plan agreed now falls due. Each plan payment
    then pays at least one installment, so the loan is never further behind until the
    plan ends. None for a current loan."""
    oldest, upcoming = loan["oldest_unpaid_due_date"], loan["next_due_date"]
    if oldest is None or upcoming is None:
        return None
    return (upcoming - oldest).days


NOTICE_TEMPLATES = (
    "early_intervention",
    "early_intervention_bankruptcy",
    "early_intervention_cease",
)


def examples_for(
    template: str, entries: list[dict], catalogue, language: str, limit: int
) -> list[dict]:
    """The options a letter shows: the loan's own, or, for a Regulation X notice to a loan
    with none to offer tonight (an open case holds them back, say), examples of the options
    the servicer offers, as §1024.39(b)(2)(iii) asks: never a required notice without them."""
    if entries or template not in NOTICE_TEMPLATES:
        return entries
    examples = [
        {
            "code": option.code,
            "name": getattr(option.name, language),
            "description": getattr(option.description, language),
            "terms": "",
            "notes": [],
        }
        for option in catalogue.option
        if option.offer and not option.referral and option.code != "housing_counseling"
    ]
    return examples[:limit]


def _terms_text(option, row: dict[str, Any], language: str) -> str:
    """An option's computed terms in the letter's words ("" when it has none)."""
    patterns = TERMS[language].get(option.terms)
    if not patterns or row["plan_months"] is None:
        return ""
    values = {
        "plan_months": row["plan_months"],
        "plan_payment": money(row["plan_payment"]),
        "plan_last_payment": money(row["plan_last_payment"]),
        "amount": money(row["amount"]),
    }
    # Before the last installment all are equal unless a payment change falls inside the plan.
    runs = [
        (len(list(same)), amount)
        for amount, same in groupby((row.get("plan_installments") or [])[:-1])
    ]
    if option.terms == "repayment_plan" and len(runs) > 1:
        pattern, run, between = PLAN_RUNS[language]
        values["runs"] = between.join(run.format(count=n, amount=money(a)) for n, a in runs)
        return pattern.format(**values)
    if (
        option.terms == "repayment_plan"
        and row["plan_months"] > 1
        and values["plan_last_payment"] == values["plan_payment"]
    ):
        return EQUAL_PLAN[language].format(**values)
    return patterns[0 if row["plan_months"] == 1 else 1].format(**values)


def _streamlined(option, row: dict[str, Any], behind_at_next_due: int | None) -> bool:
    """A short repayment plan that starts, and so stays, under 90 days past due (a single
    catch-up payment is not a plan: the note would only confuse it)."""
    return (
        option.terms == "repayment_plan"
        and row["plan_months"] is not None
        and 1 < row["plan_months"] <= STREAMLINED_MONTHS
        and behind_at_next_due is not None
        and behind_at_next_due < STREAMLINED_DAYS
    )


def option_entries(
    rows: list[dict[str, Any]],
    catalogue,
    language: str,
    state: str,
    limit: int,
    behind_at_next_due: int | None,
) -> list[dict]:
    """The options a letter shows: eligible, offered, by rank; counseling has its own section.
    ``behind_at_next_due`` is :func:`days_behind_at_next_due` of the loan."""
    entries = []
    by_code = catalogue.by_code()
    for row in sorted(rows, key=lambda r: r["rank"]):
        option = by_code.get(row["option_code"])
        if option is None or not option.offer or row["option_code"] == "housing_counseling":
            continue
        notes = list(getattr(option.notes, language))
        if option.notes_states is not None and state not in option.notes_states:
            notes = []
        if _streamlined(option, row, behind_at_next_due):
            notes.append(STREAMLINED_NOTE[language])
        entries.append(
            {
                "code": option.code,
                "name": getattr(option.name, language),
                "description": getattr(option.description, language),
                "terms": _terms_text(option, row, language),
                "notes": notes,
            }
        )
        if len(entries) >= limit:
            break
    return entries


def foreclosure_rule(product: str, occupancy: str) -> str:
    """Which 120-day statement is true of the loan: Regulation X's bar on a first
    foreclosure notice or filing before 120 days (§1024.41(f)(1)) covers closed-end loans
    on a principal residence only (§§1024.30(c)(2), 1024.31)."""
    if product == "heloc":
        return "heloc"
    return "regulation_x" if occupancy == "primary" else "not_principal_residence"


def collection_notices(
    template: str, row: dict[str, Any], collector_for_every_loan: bool
) -> dict[str, bool]:
    """The debt-collection notices the letter carries: the FDCPA disclosure (15 U.S.C.
    1692e(11)) where the servicer is a debt collector for the loan (servicing taken over in
    default: the setting for every loan, or the loan's acquired_in_default), and with it the
    Rosenthal notice (Cal. Civ. Code §1812.700) to a California borrower. Never in the
    bankruptcy form, which is not an attempt to collect."""
    collector = template != "early_intervention_bankruptcy" and (
        collector_for_every_loan or bool(row["acquired_in_default"])
    )
    return {"debt_collector": collector, "rosenthal": collector and row["state"] == "CA"}


def letter_payload(
    row: dict[str, Any],
    options: list[dict],
    servicer: dict[str, Any],
    as_of: date,
    *,
    collector_for_every_loan: bool,
) -> dict:
    """Everything one letter needs, as plain data (sent to a rendering process)."""
    language = row["language"]
    name = " ".join(part for part in (row["first_name"], row["last_name"]) if part)
    city_line = f"{row['city']}, {row['state']} {row['zip']}"
    address = [
        name,
        row["address_line1"],
        *([row["address_line2"]] if row["address_line2"] else []),
        city_line,
    ]
    change = None
    if row.get("next_change_amount") is not None and row.get("installment_amount") is not None:
        change = {
            "from_amount": money(row["installment_amount"]),
            "to_amount": money(row["next_change_amount"]),
            "date": date_text(row["next_change_date"], language),
        }
    notices = collection_notices(row["template"], row, collector_for_every_loan)
    context = {
        "b": {"name": _one_line(name)},
        "s": servicer,
        "address": [_one_line(line) for line in address],
        "date_text": date_text(as_of, language),
        "loan": {
            "last4": row["loan_id"][-4:],
            "account_ref": last4(row["loan_id"]),
            "days_past_due": row["days_past_due"],
            "amount_past_due": money(row["amount_past_due"]),
            "oldest_due": date_text(row["oldest_unpaid_due_date"], language)
            if row["oldest_unpaid_due_date"]
            else "",
            "foreclosure_rule": foreclosure_rule(row["product"], row["occupancy"]),
        },
        "options": options,
        "change": change,
        "notices": notices,
    }
    return {
        "letter_id": row["letter_id"],
        "template": row["template"],
        "language": language,
        "context": context,
        "timestamp": calendar.timegm(as_of.timetuple()),
        "checks": {
            "team_phone": servicer["team_phone"],
            "mailing_line": servicer["mailing_address"][0],
            "first_option": options[0]["name"] if options else "(no option to show)",
            "signer_name": servicer["signer_name"],
            "signer_title": servicer["signer_title"],
            "borrower": _one_line(name),
            "last4": last4(row["loan_id"]),
        },
        "facts": notices,
    }


MANIFEST_COLUMNS = (
    "letter_id",
    "name",
    "address_line1",
    "address_line2",
    "city",
    "state",
    "zip",
    "template",
    "language",
    "pages",
    "file",
)


def write_manifest(path: Path, rows: list[dict[str, Any]]) -> None:
    """The mail manifest for the print-and-mail vendor, written atomically."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(
        text, fieldnames=MANIFEST_COLUMNS, extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, text.getvalue().encode("utf-8"))


def results_frame(results: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(
        results,
        schema={
            "letter_id": pl.String,
            "problems": pl.List(pl.String),
            "pdf_path": pl.String,
            "html_path": pl.String,
            "pages": pl.Int64,
        },
    )
