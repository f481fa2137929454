"""``flask --app app seed --demo``: departments always; the demo estate and staff on request."""

from __future__ import annotations

from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from models import db
from seed.demo import DEMO_PASSWORD, DEMO_STAFF, ensure_departments, seed_demo


def print_logins() -> None:
    click.echo(f"Demo logins (the password for all: {DEMO_PASSWORD}):")
    for username, _name, _dept, roles in DEMO_STAFF:
        click.echo(f"  {username:<12} {','.join(sorted(roles))}")


@click.command("seed")
@click.option("--demo", is_flag=True, help="Add the demo estate and one account per role.")
@click.option("--first-run-only", is_flag=True,
              help="Seed only if this instance was never seeded, so deleted demo data stays deleted.")
@with_appcontext
def seed(demo: bool, first_run_only: bool) -> None:
    from workflow.audit import set_actor
    from workflow.retention import seed_policies

    set_actor(db.session(), None, "seed")  # who the audit trail names for these rows
    ensure_departments()
    seed_policies()  # REGULATIONS §10 keeping periods; an admin may change them later
    db.session.commit()
    if not demo:
        click.echo("departments ready")
        return
    marker = Path(current_app.instance_path) / ".demo-seeded"
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
