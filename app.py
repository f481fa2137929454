"""Application factory: configuration, extensions, admin screens and CLI commands; nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask, render_template
from flask_admin import Admin
from flask_admin.theme import Bootstrap4Theme
from flask_babel import lazy_gettext as _l

import config
from extensions import babel, csrf, migrate
from models import db
from views import params

ROOT = Path(__file__).resolve().parent


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    # the settings file (PM_CONFIG, /etc/wuye.env) under the environment; tests bring their own
    environ = config.environment(read_file=not test_config)
    app = Flask(__name__, instance_relative_config=True, template_folder=str(ROOT / "templates"),
                instance_path=config.instance_path(environ))
    params.init_app(app)  # before any route: every request integer range-checked (issue 12 §5)
    app.config.update(config.from_environment(environ))
    app.config.from_pyfile("config.py", silent=True)
    if test_config:
        app.config.update(test_config)
    app.config["PM_ENV"] = config.environment_name(app.config.get("PM_ENV"))
    if not test_config:  # tests name their own database and keys
        config.refuse_silent_development(app.instance_path, app.config["PM_ENV"], environ)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    if not all(app.config.get(k) for k in config.SECRET_NAMES):
        app.config.update({k: v for k, v in config.load_secrets(app.instance_path, app.config["PM_ENV"]).items()
                           if not app.config.get(k)})
    config.validate_secrets(app.config)  # one-line SettingsError now, not a binascii.Error later
    if app.config["PM_ENV"] == "production" and not test_config:
        config.mark_production(app.instance_path)
    if not app.config["SQLALCHEMY_DATABASE_URI"]:
        if app.config["PM_ENV"] == "production":  # never a database invented beside the code
            raise config.SettingsError("PM_ENV=production needs DATABASE_URL (environment or settings file)")
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{Path(app.instance_path) / 'pm.db'}"
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(ROOT / "translations"))

    db.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"), render_as_batch=True)
    csrf.init_app(app)

    import ops
    from security import auth, headers, throttle
    from views import templating

    babel.init_app(app, locale_selector=auth.select_locale)
    auth.init_app(app)
    throttle.init_app(app)
    headers.init_app(app)
    templating.init_app(app)
    ops.init_app(app)  # request log, /healthz, flask backup
    _init_admin(app)
    _init_cli(app)
    _init_errors(app)
    return app


def _init_admin(app: Flask) -> None:
    from security.headers import csp_nonce
    from views import (
        archives,
        audit,
        calendar,
        complaints,
        deadlines,
        delegation,
        duty,
        help_requests,
        imports,
        key_custody,
        moving,
        mywork,
        registry,
        renovation,
        retention,
        search,
        settings,
        staff,
        statistics,
        violations,
        visits,
    )
    from views.home import home_view

    admin = Admin(app, name=_l("Property back office"),
                  theme=Bootstrap4Theme(base_template="admin/master.html", fluid=True),
                  index_view=home_view(), csp_nonce_generator=csp_nonce)
    mywork.register(admin)
    registry.register(admin)
    key_custody.register(admin)
    help_requests.register(admin)
    complaints.register(admin)
    visits.register(admin)
    statistics.register(admin)
    renovation.register(admin)
    violations.register(admin)
    archives.register(admin)
    moving.register(admin)
    duty.register(admin)
    imports.register(admin)
    delegation.register(admin)
    staff.register(admin)
    settings.register(admin)
    calendar.register(admin)
    deadlines.register(admin)
    retention.register(admin)
    audit.register(admin)
    search.register(admin)  # the unit page and the search box, after every screen they read


def _init_cli(app: Flask) -> None:
    from security import cli as security_cli
    from security import grants, keys
    from seed import cli as seed_cli
    from views import archive_check
    from workflow import cli as workflow_cli

    archive_check.init_app(app)
    security_cli.init_app(app)
    keys.init_app(app)
    grants.init_app(app)
    seed_cli.init_app(app)
    workflow_cli.init_app(app)

    @app.route("/")
    def root():  # type: ignore[no-untyped-def]
        from flask import redirect, url_for

        return redirect(url_for("admin.index"))


def _init_errors(app: Flask) -> None:
    from flask_wtf.csrf import CSRFError

    @app.errorhandler(403)
    def forbidden(exc):  # type: ignore[no-untyped-def]
        return render_template("errors/403.html"), 403

    @app.errorhandler(CSRFError)
    def csrf_error(exc):  # type: ignore[no-untyped-def]
        return render_template("errors/400.html", reason=exc.description), 400

    @app.errorhandler(413)
    def too_large(exc):  # type: ignore[no-untyped-def]
        return render_template("errors/400.html", reason=_l("The upload is too large.")), 413
