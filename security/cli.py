"""``flask --app app create-admin``: the first real account of a deployment (ACC-1)."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import with_appcontext

from models import db
from models.validators import DomainError
from security import accounts


@click.command("create-admin")
@click.option("--username", prompt=True)
@click.option("--full-name", prompt=True)
@click.password_option()
@with_appcontext
def create_admin(username: str, full_name: str, password: str) -> None:
    """Create a system administrator; the password must meet ACC-2."""
    try:
        staff = accounts.create_staff(username, full_name, password, {"admin"})
        db.session.commit()
    except DomainError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc.message)) from None
    click.echo(f"created admin {staff.username}")


def init_app(app: Flask) -> None:
    app.cli.add_command(create_admin)
