"""The analysts' workbench: a web application over what each completed night publishes,
with its own transactional store of decisions, users and the audit log
(docs/workbench.md)."""
