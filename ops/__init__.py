"""Running the app for real: the request log, ``/healthz`` and ``flask backup``."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from ops import backup_cli, health, request_log

    request_log.init_app(app)
    health.init_app(app)
    backup_cli.init_app(app)
