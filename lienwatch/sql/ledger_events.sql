-- What moved net paid (contract rule 3) on each day in the $window_days days up to
-- $as_of (after the window's start, up to and including $as_of): one row per payment
-- or reversal that counts on such a day (loan_id, as_of_date, change; several rows a
-- day possible). A payment adds its amount on its posted day; a reversed payment takes
-- its amount off again from the later of its posted day and its first reversal's
-- (reversals posted after $as_of do not count). Every loan's rows; the caller keeps
-- the ones it watches.
--
-- Feeds the "paying later and later" signal: with net paid tonight (loan_status) these
-- changes give net paid at the end of each of those days and at the window's start
-- (transforms.flags.net_paid_by_day), so the ledger before the window is not summed.
-- What is read: payments posted in the window, every reversal (few), and the payments
-- posted before the window that a reversal in the window names. Those are looked up
-- by txn_id in the 62 days before the window first (a returned payment comes back
-- within days, an ACH return within 60); only a reversal whose payment is not found
-- there makes the lookup read the older ledger.
WITH reversed AS (  -- each reversed payment's first reversal
    SELECT reverses_txn_id AS txn_id, min(posted_date) AS reversed_date
    FROM payments
    WHERE txn_type = 'reversal' AND posted_date <= $as_of AND reverses_txn_id IS NOT NULL
    GROUP BY reverses_txn_id
),

recent AS (  -- payments posted in the window
    SELECT loan_id, posted_date, amount
    FROM payments
    WHERE txn_type = 'payment'
      AND posted_date > CAST($as_of AS DATE) - CAST($window_days AS INTEGER) AND posted_date <= $as_of
),

recent_reversed AS (  -- reversals of payments posted in the window: off from the later of the two days
    SELECT p.txn_id, p.loan_id, greatest(p.posted_date, r.reversed_date) AS event_date, p.amount
    FROM payments AS p JOIN reversed AS r USING (txn_id)
    WHERE p.txn_type = 'payment'
      AND p.posted_date > CAST($as_of AS DATE) - CAST($window_days AS INTEGER) AND p.posted_date <= $as_of
),

reversed_in_window AS (  -- first reversals posted in the window
    SELECT txn_id, reversed_date
    FROM reversed
    WHERE reversed_date > CAST($as_of AS DATE) - CAST($window_days AS INTEGER)
),

near AS (  -- those of payments posted in the 62 days before the window
    SELECT p.txn_id, p.loan_id, p.amount, r.reversed_date
    FROM payments AS p
    JOIN reversed_in_window AS r USING (txn_id)
    WHERE p.txn_type = 'payment'
      AND p.posted_date > CAST($as_of AS DATE) - CAST($window_days AS INTEGER) - 62
      AND p.posted_date <= CAST($as_of AS DATE) - CAST($window_days AS INTEGER)
),

far_bound AS (  -- the older ledger is read only when some payment was not found so far
    SELECT CASE WHEN EXISTS (SELECT 1 FROM reversed_in_window
                             ANTI JOIN near USING (txn_id) ANTI JOIN recent_reversed USING (txn_id))
                THEN CAST($as_of AS DATE) - CAST($window_days AS INTEGER) - 62
                ELSE DATE '0001-01-01' END AS far_date
),

far AS (
    SELECT p.txn_id, p.loan_id, p.amount, r.reversed_date
    FROM payments AS p
    JOIN reversed_in_window AS r USING (txn_id)
    WHERE p.txn_type = 'payment' AND p.posted_date <= (SELECT far_date FROM far_bound)
),

final AS (
    SELECT loan_id, posted_date AS as_of_date, amount AS change FROM recent
    UNION ALL
    SELECT loan_id, event_date, -amount FROM recent_reversed
    UNION ALL
    SELECT loan_id, reversed_date, -amount FROM near
    UNION ALL
    SELECT loan_id, reversed_date, -amount FROM far
)

SELECT * FROM final
