-- One row per loan with ledger activity: the ledger facts behind the early-warning
-- signals, as of $as_of (only rows posted on or before it count).
--   returns_in_window, last_return_date: reversals (returned payments) posted in the
--     $lookback_days days up to $as_of
--   last_payment_amount, last_payment_date: the latest payment posted in the 45 days up
--     to $as_of (a short one raises partial_or_suspense)
WITH ledger AS (
    SELECT loan_id, posted_date, amount, txn_type
    FROM payments
    WHERE posted_date <= $as_of
),

returns AS (
    SELECT loan_id, count(*) AS returns_in_window, max(posted_date) AS last_return_date
    FROM ledger
    WHERE txn_type = 'reversal' AND posted_date > $as_of::DATE - $lookback_days::INTEGER
    GROUP BY loan_id
),

recent_payment AS (
    SELECT loan_id, arg_max(amount, posted_date) AS last_payment_amount,
           max(posted_date) AS last_payment_date
    FROM ledger
    WHERE txn_type = 'payment' AND posted_date > $as_of::DATE - 45
    GROUP BY loan_id
),

final AS (
    SELECT coalesce(r.loan_id, p.loan_id) AS loan_id,
           coalesce(r.returns_in_window, 0) AS returns_in_window,
           r.last_return_date,
           p.last_payment_amount,
           p.last_payment_date
    FROM returns r
    FULL OUTER JOIN recent_payment p USING (loan_id)
)

SELECT * FROM final
