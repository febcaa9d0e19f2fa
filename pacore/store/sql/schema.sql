-- name: has_schema_version
-- Whether the database has Alembic's version table (a pacore schema of any revision).
SELECT to_regclass('alembic_version') IS NOT NULL;

-- name: schema_version
-- The schema revision the database is at.
SELECT version_num FROM alembic_version;
