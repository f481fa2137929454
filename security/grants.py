"""``flask db grants APP_ROLE``: the least-privilege rights of the role the app runs as (PostgreSQL).

The tables belong to an owner role that runs ``flask db upgrade`` (only a table's owner or a
superuser can disable its triggers, so the app's own account cannot lift the audit guards). Run
this as that owner after every upgrade: it grants the app role plain rights on every table the
migrations made, the narrower ones on the append-only tables (INSERT and the column-level UPDATE
retention's redaction needs on ``audit_entry``; INSERT and the purge's DELETE on ``duty_log``),
the sequences, and default privileges for tables a later migration adds.
"""

from __future__ import annotations

import click
import sqlalchemy as sa
from flask import Flask
from flask.cli import with_appcontext
from flask_migrate.cli import db as db_group

from models.base import db

# Tables whose rights are narrower than SELECT/INSERT/UPDATE/DELETE; the triggers guard them too.
NARROW = {
    "alembic_version": ["SELECT"],
    # retention's redaction (workflow/audit.py redact): these columns only, under the trigger's permit
    "audit_entry": ["SELECT", "INSERT", "UPDATE (changes, comment, redacted_at, redacted_by_batch, redaction_seal)"],
    "audit_head": ["SELECT", "INSERT", "UPDATE"],  # moves forward only (trigger)
    "duty_log": ["SELECT", "INSERT", "DELETE"],  # DTY-3; DELETE passes only for a running purge
}
PLAIN = "SELECT, INSERT, UPDATE, DELETE"


def grant_statements(conn: sa.Connection, app_role: str) -> list[str]:
    quote = conn.dialect.identifier_preparer.quote
    role = quote(app_role)
    schema = conn.scalar(sa.text("SELECT current_schema()"))
    owner = conn.scalar(sa.text("SELECT current_user"))
    tables = list(
        conn.scalars(sa.text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename"))
    )
    statements = [
        f"GRANT USAGE ON SCHEMA {quote(schema)} TO {role}",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA {quote(schema)} FROM {role}",
    ]
    for table in tables:
        for rights in NARROW.get(table, [PLAIN]):
            statements.append(f"GRANT {rights} ON {quote(table)} TO {role}")
    statements += [
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {quote(schema)} TO {role}",
        # tables and sequences a later migration creates, until this command runs again after it
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {quote(owner)} IN SCHEMA {quote(schema)} GRANT {PLAIN} ON TABLES TO {role}",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {quote(owner)} IN SCHEMA {quote(schema)}"
        f" GRANT USAGE, SELECT ON SEQUENCES TO {role}",
    ]
    return statements


@db_group.command("grants")
@click.argument("app_role")
@click.option("--print-only", is_flag=True, help="Print the SQL instead of running it.")
@with_appcontext
def grants_command(app_role: str, print_only: bool) -> None:
    """Grant APP_ROLE what the app needs and no more (run as the tables' owner after `db upgrade`)."""
    if db.engine.dialect.name != "postgresql":
        raise click.ClickException("db grants is for PostgreSQL (SQLite has no roles)")
    with db.engine.begin() as conn:
        if not conn.scalar(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": app_role}):
            raise click.ClickException(f"no role {app_role!r}: CREATE ROLE {app_role} LOGIN PASSWORD '…' first")
        statements = grant_statements(conn, app_role)
        if print_only:
            click.echo(";\n".join(statements) + ";")
            return
        for statement in statements:
            conn.exec_driver_sql(statement)
    click.echo(f"granted {app_role}: {len(statements)} statements")


def init_app(app: Flask) -> None:
    """The command joins Flask-Migrate's ``flask db`` group (registered on import, above)."""
