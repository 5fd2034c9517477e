-- What net paid (net_paid.sql) moved by from the night $kept to the night $as_of
-- ($kept <= $as_of), per loan with a move: one row per loan (loan_id, change).
--
-- Exact when no ledger row posted on or before $kept has been loaded since net paid was
-- worked out for $kept (the delinquency step checks that by load id first): then a
-- payment counts from the later night only if it was posted after $kept, and is undone
-- from it only if it was counted and its first reversal came after $kept, or it was
-- posted after $kept and a reversal posted by $as_of names it. Several reversals of
-- one payment undo it once; a reversal naming no payment is ignored; the money comes
-- off the loan of the payment (contract rule 3, as in net_paid.sql).
WITH new_payments AS (  -- payments posted after $kept
    SELECT txn_id, loan_id, amount FROM payments
    WHERE txn_type = 'payment' AND posted_date > $kept AND posted_date <= $as_of
),

new_reversals AS (  -- payments named by a reversal posted after $kept
    SELECT DISTINCT reverses_txn_id AS txn_id FROM payments
    WHERE txn_type = 'reversal' AND reverses_txn_id IS NOT NULL
      AND posted_date > $kept AND posted_date <= $as_of
),

reversed_before AS (  -- of those, the ones a reversal posted by $kept had undone already
    SELECT DISTINCT reverses_txn_id AS txn_id FROM payments
    WHERE txn_type = 'reversal' AND posted_date <= $kept
      AND reverses_txn_id IN (SELECT txn_id FROM new_reversals)
),

-- The payments posted by $kept that those reversals name: looked for in the 62 days up to
-- $kept first (a returned payment comes back within days, an ACH return within 60), and
-- in the older ledger only when one is not found there. Each txn_id read is a text to
-- decode, tens of millions of them in the whole ledger.
named_near AS (
    SELECT txn_id, loan_id, amount FROM payments
    WHERE txn_type = 'payment' AND posted_date <= $kept
      AND posted_date > CAST($kept AS DATE) - 62
      AND txn_id IN (SELECT txn_id FROM new_reversals)
),

far_bound AS (
    SELECT CASE WHEN EXISTS (SELECT 1 FROM new_reversals
                             ANTI JOIN named_near USING (txn_id)
                             ANTI JOIN new_payments USING (txn_id))
                THEN CAST($kept AS DATE) - 62
                ELSE DATE '0001-01-01' END AS far_date
),

named AS (
    SELECT txn_id, loan_id, amount FROM named_near
    UNION ALL
    SELECT txn_id, loan_id, amount FROM payments
    WHERE txn_type = 'payment' AND posted_date <= (SELECT far_date FROM far_bound)
      AND txn_id IN (SELECT txn_id FROM new_reversals)
),

undone AS (  -- payments reversed as of $as_of that were not as of $kept
    SELECT loan_id, amount FROM named
    WHERE txn_id NOT IN (SELECT txn_id FROM reversed_before)
    UNION ALL
    SELECT loan_id, amount FROM new_payments
    WHERE txn_id IN (SELECT reverses_txn_id FROM payments
                     WHERE txn_type = 'reversal' AND reverses_txn_id IS NOT NULL
                       AND posted_date <= $as_of)
),

final AS (
    SELECT loan_id, CAST(sum(change) AS DECIMAL(18, 2)) AS change
    FROM (
        SELECT loan_id, amount AS change FROM new_payments
        UNION ALL
        SELECT loan_id, -amount FROM undone
    )
    GROUP BY loan_id
)

SELECT * FROM final
