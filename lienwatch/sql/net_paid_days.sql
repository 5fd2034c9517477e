-- One row per loan per day from $from_date to $to_date (both inclusive), for the loans
-- in the registered frame _loans (loan_id): net paid as of each day, with net_paid.sql's
-- meaning (payments posted on or before the day, less those a reversal posted on or
-- before it undoes). Used to follow days past due day by day (the profile figures).
WITH days AS (
    SELECT CAST(d AS DATE) AS as_of_date
    FROM range(CAST($from_date AS DATE), CAST($to_date AS DATE) + INTERVAL 1 DAY, INTERVAL 1 DAY) AS t(d)
),

first_reversals AS (
    SELECT reverses_txn_id AS txn_id, min(posted_date) AS reversed_date
    FROM payments
    WHERE txn_type = 'reversal' AND reverses_txn_id IS NOT NULL
    GROUP BY reverses_txn_id
),

moves AS (
    SELECT p.loan_id, p.posted_date AS day, p.amount AS change
    FROM payments AS p SEMI JOIN _loans USING (loan_id)
    WHERE p.txn_type = 'payment'
    UNION ALL
    SELECT p.loan_id, greatest(p.posted_date, r.reversed_date) AS day, -p.amount AS change
    FROM payments AS p SEMI JOIN _loans USING (loan_id)
    JOIN first_reversals AS r USING (txn_id)
    WHERE p.txn_type = 'payment'
),

running AS (
    SELECT loan_id, day,
           sum(sum(change)) OVER (PARTITION BY loan_id ORDER BY day) AS net_paid
    FROM moves
    GROUP BY loan_id, day
),

grid AS (
    SELECT l.loan_id, d.as_of_date FROM _loans AS l CROSS JOIN days AS d
)

SELECT g.loan_id, g.as_of_date, CAST(coalesce(r.net_paid, 0) AS DECIMAL(18, 2)) AS net_paid
FROM grid AS g
ASOF LEFT JOIN running AS r ON r.loan_id = g.loan_id AND g.as_of_date >= r.day
