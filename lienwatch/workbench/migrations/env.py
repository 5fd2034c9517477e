"""Alembic's environment for the workbench store: migrations run on the connection the
store opens (:func:`lienwatch.workbench.store.open_store`), never from a config file."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
