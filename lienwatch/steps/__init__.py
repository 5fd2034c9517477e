"""The steps of a night, a module each, in the order the flow runs them: ``ingest``,
``delinquency``, ``flags``, ``options``, ``letters``, ``review``; and ``record``, the
night's own record around them.

Each step's ``run`` takes the :class:`lienwatch.night.Night` (and the settings), opens
its own warehouse connection, reads, calls the pure transforms, writes the night's rows
in one transaction (replacing that night's rows, so a rerun is safe) and returns a small
dict of counts. The Prefect flow (``flows/nightly.py``) only wires them together.
"""
