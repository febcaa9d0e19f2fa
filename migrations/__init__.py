"""Alembic migrations: the only way pacore's schema changes. Applied by `pacore db upgrade`."""
