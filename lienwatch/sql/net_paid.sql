-- One row per loan with a payment posted on or before $as_of: what the ledger says the
-- borrower has paid as of that date (contract rule 3).
--
--   net_paid         payments posted <= $as_of, less the amounts of those payments that
--                    a reversal posted <= $as_of undoes. A reversal undoes the whole
--                    amount of the payment it names (its own amount column is not used);
--                    it counts only when that payment is itself posted <= $as_of, so a
--                    reversal can never take net_paid below zero. Several reversals of
--                    one payment undo it once. A reversal naming no payment in the
--                    ledger is ignored. The money is taken off the loan of the payment.
--   gross_paid       payments posted <= $as_of, reversed or not
--   reversed_amount  gross_paid - net_paid
--   payment_count    payments posted <= $as_of
--   reversal_count   of those, how many are reversed as of $as_of
--   last_payment_date
--                    the latest posted_date of a payment posted <= $as_of (reversed or
--                    not)
--   last_reversal_date
--                    the latest posted_date of a counted reversal (for a payment reversed
--                    more than once, its first reversal counts); null if none
--
-- The ledger is scanned twice, never materialised: once for the per-loan sums (the
-- big GROUP BY) and once to look up the payments that reversals name (a hash join
-- whose build side is the few reversals).
WITH payments_posted AS NOT MATERIALIZED (
    SELECT txn_id, loan_id, posted_date, amount
    FROM payments
    WHERE txn_type = 'payment' AND posted_date <= $as_of
),

reversals_posted AS (
    SELECT reverses_txn_id AS txn_id, min(posted_date) AS reversed_date
    FROM payments
    WHERE txn_type = 'reversal' AND reverses_txn_id IS NOT NULL AND posted_date <= $as_of
    GROUP BY reverses_txn_id
),

paid AS (
    SELECT loan_id, sum(amount) AS gross_paid, count(*) AS payment_count,
           max(posted_date) AS last_payment_date
    FROM payments_posted
    GROUP BY loan_id
),

reversed AS (
    SELECT p.loan_id, sum(p.amount) AS reversed_amount, count(*) AS reversal_count,
           max(r.reversed_date) AS last_reversal_date
    FROM payments_posted AS p
    JOIN reversals_posted AS r USING (txn_id)
    GROUP BY p.loan_id
),

final AS (
    SELECT
        loan_id,
        CAST(gross_paid - coalesce(reversed_amount, 0) AS DECIMAL(18, 2)) AS net_paid,
        CAST(gross_paid AS DECIMAL(18, 2)) AS gross_paid,
        CAST(coalesce(reversed_amount, 0) AS DECIMAL(18, 2)) AS reversed_amount,
        payment_count,
        coalesce(reversal_count, 0) AS reversal_count,
        last_payment_date,
        last_reversal_date
    FROM paid
    LEFT JOIN reversed USING (loan_id)
)

SELECT * FROM final
