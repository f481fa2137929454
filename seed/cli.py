"""``flask --app app seed --demo``: departments always; the demo estate and staff on request."""

from __future__ import annotations

from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from models import db
from seed.demo import COMPOUND, DEMO_PASSWORD, DEMO_STAFF, TOWER, ensure_departments, seed_demo


def print_logins() -> None:
    click.echo(f"Demo logins (the password for all: {DEMO_PASSWORD}):")
    for username, _name, _dept, roles in DEMO_STAFF:
        click.echo(f"  {username:<12} {','.join(sorted(roles))}")


def non_demo_data() -> str | None:
    """What in the database is not the demo's (a real account or estate), or None."""
    import sqlalchemy as sa

    from models import Estate, Staff

    usernames = [username for username, *_ in DEMO_STAFF]
    staff = db.session.scalar(sa.select(Staff.username).where(Staff.username.not_in(usernames)).limit(1))
    if staff is not None:
        return f"account {staff!r}"
    estate = db.session.scalar(sa.select(Estate.code).where(Estate.code.not_in([COMPOUND[0], TOWER[0]])).limit(1))
    return f"estate {estate!r}" if estate is not None else None


def refuse_demo(seeding: bool) -> None:
    """Demo accounts (their password is in the README) and estates never reach a real firm's data."""
    if current_app.config.get("PM_ENV") == "production":
        raise click.ClickException("seed --demo refused: PM_ENV is production (the demo accounts' password"
                                   " is public); run `flask seed` for the departments only")
    found = non_demo_data() if seeding else None
    if found is not None:
        raise click.ClickException(f"seed --demo refused: the database holds data that is not the demo's"
                                   f" ({found}); demo records go into a database of their own")


@click.command("seed")
@click.option("--demo", is_flag=True, help="Add the demo estate and one account per role.")
@click.option("--first-run-only", is_flag=True,
              help="Seed only if this instance was never seeded, so deleted demo data stays deleted.")
@with_appcontext
def seed(demo: bool, first_run_only: bool) -> None:
    from workflow.audit import set_actor
    from workflow.retention import seed_policies

    marker = Path(current_app.instance_path) / ".demo-seeded"
    if demo:
        refuse_demo(seeding=not (first_run_only and marker.exists()))  # before anything is written
    set_actor(db.session(), None, "seed")  # who the audit trail names for these rows
    ensure_departments()
    seed_policies()  # REGULATIONS §10 keeping periods; an admin may change them later
    db.session.commit()
    if not demo:
        click.echo("departments ready")
        return
    if not (first_run_only and marker.exists()):
        seed_demo()
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("seeded\n")
        click.echo("demo estate ready")
    print_logins()


@click.command("import-registry")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--kind", type=click.Choice(["units", "residents"]), required=True)
@click.option("--mode", type=click.Choice(["dry_run", "all_or_nothing", "valid_only"]), default="dry_run",
              show_default=True)
@with_appcontext
def import_registry(path: str, kind: str, mode: str) -> None:
    """The web importer's rules for files too big for one web request (no row limit here)."""
    from seed.importer import run_import
    from workflow.audit import set_actor

    set_actor(db.session(), None, f"import {Path(path).name}"[:64])
    data = Path(path).read_bytes()
    report = run_import(db.session, data, Path(path).name, kind, mode, max_rows=10_000_000,
                        max_bytes=1024 * 1024 * 1024)
    for error in report.errors:
        click.echo(f"row {error.row or '-'} {error.column}: {error.message}")
    click.echo(f"rows {report.total}, valid {report.valid}, errors {len(report.errors)}, "
               f"written: {'yes' if report.written else 'no'}")
    if report.errors and mode != "valid_only":
        raise SystemExit(1)


def init_app(app: Flask) -> None:
    app.cli.add_command(seed)
    app.cli.add_command(import_registry)
