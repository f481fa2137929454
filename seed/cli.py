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
    ensure_departments()
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


def init_app(app: Flask) -> None:
    app.cli.add_command(seed)
