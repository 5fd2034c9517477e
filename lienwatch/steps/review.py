"""The review step, the night's last: the cases, promises to pay, the review page, the call
list and the queue exports in the night's folder. The CSV files hold every flagged loan
and every call due; the page and the workbook hold at most ``risk.review_page_rows``
loans (:func:`transforms.cases.on_page`) and say how many they leave out."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import polars as pl

from lienwatch import warehouse
from lienwatch.errors import LienwatchError
from lienwatch.files import write_atomic
from lienwatch.night import Night
from lienwatch.review import decisions, page
from lienwatch.review.exports import write_exports
from lienwatch.review.render import PAGE, render_page
from lienwatch.settings import Settings
from lienwatch.workbench import publish
from transforms import cases


def run(night: Night, settings: Settings) -> dict[str, Any]:
    """The night's cases, promises, review page, call list and queue exports.

    Cases are recomputed from the log as it stood before the night, and the night's
    events replace any from an earlier run of the same night, so a rerun never
    duplicates them.
    """
    as_of = night.as_of
    con = warehouse.connect(night.db)
    try:
        if not con.execute(
            "SELECT count(*) FROM loan_status WHERE as_of_date = $d", {"d": as_of}
        ).fetchall()[0][0]:
            # Without the night's status and flags every open case would look resolved.
            raise LienwatchError(
                f"no loan_status for {as_of}: the night's earlier steps have not run"
            )
        decisions.ensure_tables(con)
        flags = warehouse.frame(
            con,
            "SELECT loan_id, tier, days_past_due FROM risk_flags WHERE as_of_date = $d",
            {"d": as_of},
        )
        before = warehouse.frame(
            con, "SELECT * FROM review_case_events WHERE as_of_date < $d", {"d": as_of}
        )
        open_before = cases.case_state(before).filter(pl.col("status") == "open")
        after, events = cases.case_events(open_before, flags, as_of)
        promises = decisions.promises_as_of(con, as_of)
        with warehouse.transaction(con):
            warehouse.replace_night(con, "review_case_events", events, as_of)
            log = warehouse.frame(con, "SELECT * FROM review_case_events")
            warehouse.replace_all(con, "review_cases", cases.case_state(log))
            warehouse.replace_night(con, "review_promises", promises, as_of)
        queue = page.queue_frame(con, as_of)
        call = cases.call_list(queue, decisions.decisions(con, as_of), as_of)
        shown = cases.on_page(queue, call, settings.risk.review_page_rows)
        folder = night.night_dir
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        # The exports need nothing more from the warehouse: they are written (the workbook
        # is seconds of Python) while the page's figures are read (queries that leave the
        # interpreter free), and the workbench's snapshot is written on a second
        # connection meanwhile (the warehouse's work), its figures last, from the page's.
        # The queue's payment histories are drawn once, on a third: the snapshot takes
        # them all (its last table) and the page those of its loans.
        figures: Future[dict[str, Any]] = Future()
        reader, drawer = con.cursor(), con.cursor()
        try:
            with ThreadPoolExecutor(3, thread_name_prefix="review-outputs") as pool:
                exports = pool.submit(write_exports, folder, queue, call, shown, as_of)
                histories = pool.submit(
                    page.payment_histories, drawer, as_of, queue["loan_id"].to_list(), kept=True
                )
                snapshot = pool.submit(
                    publish.build,
                    reader,
                    night,
                    settings,
                    queue,
                    call,
                    promises,
                    figures.result,
                    histories.result,
                )
                try:
                    model = page.page_model(
                        con, night, settings, queue, call, promises, shown, histories.result
                    )
                except BaseException as failed:
                    figures.set_exception(failed)
                    reader.interrupt()
                    drawer.interrupt()
                    raise
                figures.set_result({k: v for k, v in model.items() if k not in ("queue", "detail")})
                exports.result()
                snapshot.result()
        finally:
            reader.close()
            drawer.close()
    finally:
        con.close()

    html = render_page(model)
    write_atomic(folder / PAGE, html.encode("utf-8"))
    counted = events.group_by("event").len()
    kept = promises.group_by("status").len()
    return {
        "flagged": queue.height,
        "cases_open": int((after["status"] == "open").sum()),
        "events": dict(zip(counted["event"].to_list(), counted["len"].to_list(), strict=True)),
        "call_list": call.height,
        "promises": dict(zip(kept["status"].to_list(), kept["len"].to_list(), strict=True)),
        "letters_held": int((queue["letter_status"] == "held").sum()),
        "on_page": shown.height,
        "page_kb": round(len(html.encode("utf-8")) / 1024),
        "page": str(folder / PAGE),
    }
