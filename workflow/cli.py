"""CLI of the shared layer: ``flask workflow remind``, and ``flask audit verify|checkpoint``
(workflow/audit_checkpoints.py)."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

from models.base import db
from workflow import audit, audit_checkpoints, engine

workflow_cli = AppGroup("workflow", help="Workflow engine tasks.")


@workflow_cli.command("remind")
def remind_command() -> None:
    """Remind approvers of requests waiting longer than the setting (safe to run repeatedly)."""
    audit.set_actor(db.session(), None, "system")
    click.echo(f"reminders sent: {engine.remind()}")


def init_app(app: Flask) -> None:
    import models.key_custody  # noqa: F401  (registers the shipped example workflow)
    from workflow import retention, sweep

    app.cli.add_command(workflow_cli)
    audit_checkpoints.init_app(app)
    sweep.init_app(app)
    retention.init_app(app)
