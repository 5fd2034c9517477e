-- One row per loan with ledger activity: the ledger facts behind the early-warning
-- signals, as of $as_of (only rows posted on or before it count).
--   returns_in_window, last_return_date: reversals (returned payments) posted in the
--     $lookback_days days up to $as_of
--   last_payment_amount, last_payment_date: the latest payment posted in the 45 days up
--     to $as_of (a short one raises partial_or_suspense)
-- A loan has a row when it has either; the ledger is read once, from the earlier of the
-- two windows on.
WITH recent AS (
    SELECT loan_id, posted_date, amount, txn_type,
           txn_type = 'reversal' AND posted_date > $as_of::DATE - $lookback_days::INTEGER AS is_return,
           txn_type = 'payment' AND posted_date > $as_of::DATE - 45 AS is_payment
    FROM payments
    WHERE posted_date <= $as_of
      AND posted_date > $as_of::DATE - greatest($lookback_days::INTEGER, 45)
),

final AS (
    SELECT loan_id,
           count(*) FILTER (WHERE is_return) AS returns_in_window,
           max(posted_date) FILTER (WHERE is_return) AS last_return_date,
           arg_max(amount, posted_date) FILTER (WHERE is_payment) AS last_payment_amount,
           max(posted_date) FILTER (WHERE is_payment) AS last_payment_date
    FROM recent
    WHERE is_return OR is_payment
    GROUP BY loan_id
)

SELECT * FROM final
