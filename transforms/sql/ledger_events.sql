-- One row per active second lien per day with ledger activity in the $window_days days
-- up to $as_of, plus one opening row at the window's start: net paid (contract rule 3)
-- as it stood at the end of that day. Feeds the "paying later and later" signal, which
-- needs the day each recent installment was paid.
WITH loans_watched AS (
    SELECT loan_id FROM loans WHERE lien_position = 2 AND status = 'active'
),

window_start AS (
    SELECT CAST($as_of AS DATE) - CAST($window_days AS INTEGER) AS start_date
),

paid AS (
    SELECT p.txn_id, p.loan_id, p.posted_date, p.amount
    FROM payments AS p JOIN loans_watched USING (loan_id)
    WHERE p.txn_type = 'payment' AND p.posted_date <= $as_of
),

reversed AS (
    SELECT reverses_txn_id AS txn_id, min(posted_date) AS reversed_date
    FROM payments
    WHERE txn_type = 'reversal' AND posted_date <= $as_of AND reverses_txn_id IS NOT NULL
    GROUP BY reverses_txn_id
),

deltas AS (  -- a payment adds on its day; its reversal takes it off from the later of the two days
    SELECT loan_id, posted_date AS event_date, amount AS delta FROM paid
    UNION ALL
    SELECT paid.loan_id, greatest(paid.posted_date, reversed.reversed_date), -paid.amount
    FROM paid JOIN reversed USING (txn_id)
),

opening AS (
    SELECT loans_watched.loan_id, w.start_date AS event_date,
           coalesce(sum(d.delta) FILTER (WHERE d.event_date <= w.start_date), 0) AS delta
    FROM loans_watched CROSS JOIN window_start AS w
    LEFT JOIN deltas AS d USING (loan_id)
    GROUP BY loans_watched.loan_id, w.start_date
),

daily AS (
    SELECT d.loan_id, d.event_date, sum(d.delta) AS delta
    FROM deltas AS d, window_start AS w
    WHERE d.event_date > w.start_date
    GROUP BY d.loan_id, d.event_date
    UNION ALL
    SELECT loan_id, event_date, delta FROM opening
),

final AS (
    SELECT loan_id, event_date AS as_of_date,
           CAST(sum(delta) OVER (PARTITION BY loan_id ORDER BY event_date) AS DECIMAL(18, 2)) AS net_paid
    FROM daily
)

SELECT * FROM final
