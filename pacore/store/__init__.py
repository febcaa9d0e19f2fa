"""The database door: the connection pool and transactions (`database`), the embedded server
(`embedded`), the schema as models (`models`), every statement as a named query (`sql/*.sql`, run only
by `Store`), and the budget writes (`budgets`)."""
