"""People's corrections ("Wrong answer?"), kept in a real database: see docs/feedback.md.

* :mod:`catdog.feedback.models`: the table (SQLAlchemy 2);
* :mod:`catdog.feedback.store`: :class:`~catdog.feedback.store.FeedbackStore` (record, summary,
  delete, export, retention) on SQLite or any SQLAlchemy URL;
* ``migrations/``: the schema's Alembic history, shipped in the package and applied on first use;
* :mod:`catdog.feedback.errors`: its errors (importable without SQLAlchemy).

The API's endpoints are in :mod:`catdog.api.feedback`, the commands in :mod:`catdog.commands.feedback`.
Importing this package loads nothing: SQLAlchemy is imported by ``store`` and ``models`` only.
"""

#: Longest model name, version and label kept (the API refuses longer ones; the table's column sizes).
MODEL_NAME_LENGTH = 128
VERSION_LENGTH = 64
LABEL_LENGTH = 64
