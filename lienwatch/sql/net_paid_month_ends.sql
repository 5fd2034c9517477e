-- One row per loan per month end from $from_date to $to_date (both inclusive), from the
-- loan's first month end with a payment on: net_paid.sql's figures as of each month
-- end, with the same meanings (as_of_date is the month end).
--
-- Each payment adds its amount from its posted_date on, and, when reversed, takes it
-- off again from the later of its posted_date and its first reversal's posted_date on
-- (a reversal counts only once the payment it names is posted). Payments and
-- reversals are summed once per loan per month (anything before the first month end
-- falls into it) and then run up with a cumulative window, so the ledger is read once
-- whatever the number of month ends; no month end joins the raw ledger.
WITH month_ends AS (
    SELECT CAST(last_day(month_start) AS DATE) AS as_of_date
    FROM range(
        date_trunc('month', CAST($from_date AS DATE)),
        date_trunc('month', CAST($to_date AS DATE)) + INTERVAL 1 MONTH,
        INTERVAL 1 MONTH
    ) AS months(month_start)
    WHERE last_day(month_start) BETWEEN CAST($from_date AS DATE) AND CAST($to_date AS DATE)
),

bounds AS (
    SELECT min(as_of_date) AS first_month_end, max(as_of_date) AS last_month_end
    FROM month_ends
),

payments_posted AS NOT MATERIALIZED (
    SELECT p.txn_id, p.loan_id, p.posted_date, p.amount
    FROM payments AS p
    WHERE p.txn_type = 'payment' AND p.posted_date <= (SELECT last_month_end FROM bounds)
),

first_reversals AS (
    SELECT p.reverses_txn_id AS txn_id, min(p.posted_date) AS reversed_date
    FROM payments AS p
    WHERE p.txn_type = 'reversal' AND p.reverses_txn_id IS NOT NULL
      AND p.posted_date <= (SELECT last_month_end FROM bounds)
    GROUP BY p.reverses_txn_id
),

reversal_events AS MATERIALIZED (
    SELECT p.loan_id, greatest(p.posted_date, r.reversed_date) AS event_date, p.amount,
           r.reversed_date
    FROM payments_posted AS p
    JOIN first_reversals AS r USING (txn_id)
),

payment_months AS (
    SELECT loan_id,
           CAST(greatest(last_day(posted_date), (SELECT first_month_end FROM bounds)) AS DATE) AS as_of_date,
           CAST(sum(amount) AS DECIMAL(18, 2)) AS gross_change,
           count(*) AS payment_change,
           max(posted_date) AS last_payment_date
    FROM payments_posted
    GROUP BY ALL
),

reversal_months AS (
    SELECT loan_id,
           CAST(greatest(last_day(event_date), (SELECT first_month_end FROM bounds)) AS DATE) AS as_of_date,
           CAST(sum(amount) AS DECIMAL(18, 2)) AS reversed_change,
           count(*) AS reversal_change,
           max(reversed_date) AS last_reversal_date
    FROM reversal_events
    WHERE event_date <= (SELECT last_month_end FROM bounds)
    GROUP BY ALL
),

loan_first_month AS (
    SELECT loan_id, min(as_of_date) AS first_month_end
    FROM payment_months
    GROUP BY loan_id
),

grid AS (
    SELECT f.loan_id, m.as_of_date
    FROM loan_first_month AS f
    JOIN month_ends AS m ON m.as_of_date >= f.first_month_end
),

running AS (
    SELECT
        g.loan_id,
        g.as_of_date,
        sum(coalesce(pm.gross_change, 0)) OVER loan_months AS gross_paid,
        sum(coalesce(rm.reversed_change, 0)) OVER loan_months AS reversed_amount,
        sum(coalesce(pm.payment_change, 0)) OVER loan_months AS payment_count,
        sum(coalesce(rm.reversal_change, 0)) OVER loan_months AS reversal_count,
        max(pm.last_payment_date) OVER loan_months AS last_payment_date,
        max(rm.last_reversal_date) OVER loan_months AS last_reversal_date
    FROM grid AS g
    LEFT JOIN payment_months AS pm USING (loan_id, as_of_date)
    LEFT JOIN reversal_months AS rm USING (loan_id, as_of_date)
    WINDOW loan_months AS (PARTITION BY g.loan_id ORDER BY g.as_of_date
                           ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),

final AS (
    SELECT
        loan_id,
        as_of_date,
        CAST(gross_paid - reversed_amount AS DECIMAL(18, 2)) AS net_paid,
        CAST(gross_paid AS DECIMAL(18, 2)) AS gross_paid,
        CAST(reversed_amount AS DECIMAL(18, 2)) AS reversed_amount,
        CAST(payment_count AS BIGINT) AS payment_count,
        CAST(reversal_count AS BIGINT) AS reversal_count,
        last_payment_date,
        last_reversal_date
    FROM running
)

SELECT * FROM final
