"""``flask archives check [--repair]``: ARC-13, unit and archive counts agree for every estate."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

from models.base import db

archives_cli = AppGroup("archives", help="Resident archives (ARC-13).")


@archives_cli.command("check")
@click.option("--repair", is_flag=True, help="Create the missing archives (audited as the system).")
def check_command(repair: bool) -> None:
    """List estates whose unit and archive counts differ; exit 1 when any does (and nothing was repaired)."""
    from models.archive_coverage import coverage
    from models.archive_coverage import repair as create_missing
    from workflow import audit

    if repair:
        audit.set_actor(db.session(), None, "system")
        made = create_missing()
        db.session.commit()
        click.echo(f"archives created: {made}")
    rows = coverage()
    bad = [r for r in rows if not r.ok]
    for row in rows:
        click.echo(f"{row.estate}: units {row.units}, archives {row.archives}{'' if row.ok else '  MISSING'}")
    click.echo(f"estates: {len(rows)}, with missing archives: {len(bad)}")
    if bad:
        raise SystemExit(1)


def init_app(app: Flask) -> None:
    app.cli.add_command(archives_cli)
