"""``flask --app app seed --demo``: departments always; the demo estate and staff on request."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import with_appcontext

from models import db
from seed.demo import DEMO_PASSWORD, ensure_departments, seed_demo


@click.command("seed")
@click.option("--demo", is_flag=True, help="Add the demo estate and one account per role.")
@with_appcontext
def seed(demo: bool) -> None:
    ensure_departments()
    db.session.commit()
    if not demo:
        click.echo("departments ready")
        return
    staff = seed_demo()
    click.echo("Demo logins (password for all: %s):" % DEMO_PASSWORD)
    for username, roles in staff:
        click.echo(f"  {username:<12} {roles}")


def init_app(app: Flask) -> None:
    app.cli.add_command(seed)
