"""The pure core of pacore: the PaCoRe algorithm, input validation, budgets and state decisions.

Nothing in this package performs I/O. It imports no Celery, Redis, HTTP client or database session;
the import contract in pyproject.toml (import-linter) keeps it that way.
"""
