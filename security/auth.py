"""Login, logout, password reset and language switch; session hardening (ACC-2, ACC-3, ACC-7)."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    current_app,
    flash,
    has_request_context,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import LoginManager, current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length

from models import Staff, db
from models.validators import DomainError
from security import accounts, sessions
from security.passwords import verify_password

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = _l("Please log in to continue.")
login_manager.session_protection = "strong"
LOCALES = ("zh_Hans_CN", "en")


class LoginForm(FlaskForm):
    username = StringField(_l("Username"), validators=[DataRequired(), Length(max=64)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=128)])


class NewPasswordForm(FlaskForm):
    password = PasswordField(_l("New password"), validators=[DataRequired(), Length(max=128)])
    confirm = PasswordField(_l("Repeat new password"),
                            validators=[DataRequired(), EqualTo("password", _l("Passwords differ."))])


class ReauthForm(FlaskForm):
    password = PasswordField(_l("Your password"), validators=[DataRequired(), Length(max=128)])


REAUTH_WINDOW_SECONDS = 300


def recently_reauthenticated() -> bool:
    """ACC-5: a sensitive operation needs the password typed again within the last 5 minutes."""
    return time.time() - session.get("reauth_at", 0) < REAUTH_WINDOW_SECONDS


class ChangePasswordForm(NewPasswordForm):
    current = PasswordField(_l("Current password"), validators=[DataRequired()])


@login_manager.user_loader
def load_user(token: str) -> Staff | None:
    """Cookies carry ``id:epoch``; a reset or deactivation bumps the epoch and ends them."""
    staff_id, _sep, epoch = token.partition(":")
    if not staff_id.isdigit() or not epoch.isdigit():
        return None
    staff = db.session.get(Staff, int(staff_id))
    if staff is None or not staff.active or staff.session_epoch != int(epoch):
        return None
    return staff


def safe_next(target: str | None) -> str:
    """Only same-site relative paths; anything else goes to the admin home."""
    default = url_for("admin.index")
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else default


@bp.route("/login", methods=["GET", "POST"])
def login():  # type: ignore[no-untyped-def]
    if current_user.is_authenticated:
        return redirect(url_for("admin.index"))
    form = LoginForm()
    if form.validate_on_submit():
        try:
            staff = accounts.authenticate(form.username.data, form.password.data)
        except DomainError as exc:
            form.username.errors.append(str(exc.message))
            return render_template("auth/login.html", form=form), 429
        if staff is None:
            form.password.errors.append(_("Wrong username or password."))
            return render_template("auth/login.html", form=form), 401
        target = safe_next(request.args.get("next"))
        session.clear()  # a fresh session at login: nothing set before survives (fixation)
        login_user(staff, remember=False)
        sessions.start(staff)
        db.session.commit()
        session["locale"] = staff.locale
        session["seen"] = time.time()
        session.permanent = True
        return redirect(target)
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
def logout():  # type: ignore[no-untyped-def]
    if current_user.is_authenticated:
        accounts.log_event("logout", staff=current_user)
        sessions.revoke_current()  # a copy of this cookie is dead from now on
        db.session.commit()
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"))


@bp.route("/reset/<token>", methods=["GET", "POST"])
def reset(token: str):  # type: ignore[no-untyped-def]
    if accounts.find_reset_token(token) is None:
        flash(_("This reset link is invalid or has expired."), "error")
        return redirect(url_for("auth.login"))
    form = NewPasswordForm()
    if form.validate_on_submit():
        try:
            accounts.reset_with_token(token, form.password.data)
            db.session.commit()
        except accounts.ResetLinkUsed:
            db.session.rollback()  # another request used the link first: the ordinary message
            flash(_("This reset link is invalid or has expired."), "error")
            return redirect(url_for("auth.login"))
        except DomainError as exc:
            db.session.rollback()
            form.password.errors.append(str(exc.message))
        except (StaleDataError, IntegrityError):
            db.session.rollback()  # the account changed under us; the link stays unused
            form.password.errors.append(_("Someone else changed this record after you opened it. "
                                          "Reload and try again; nothing of yours was saved."))
        else:
            flash(_("Password changed. Please log in."), "success")
            return redirect(url_for("auth.login"))
    return render_template("auth/reset.html", form=form)


@bp.route("/password", methods=["GET", "POST"])
@login_required
def change_password():  # type: ignore[no-untyped-def]
    form = ChangePasswordForm()
    if form.validate_on_submit():
        if not verify_password(current_user.password_hash, form.current.data):
            form.current.errors.append(_("Current password is wrong."))
        else:
            try:
                accounts.set_password(current_user, form.password.data)
            except DomainError as exc:
                db.session.rollback()
                form.password.errors.append(str(exc.message))
            else:
                staff = current_user._get_current_object()
                sessions.start(staff)  # set_password ended every session, this one too: a new one
                db.session.commit()
                login_user(staff, remember=False)  # re-issue with the new epoch
                flash(_("Password changed."), "success")
                return redirect(url_for("admin.index"))
    return render_template("auth/password.html", form=form)


@bp.route("/reauth", methods=["GET", "POST"])
@login_required
def reauth():  # type: ignore[no-untyped-def]
    """Confirm a sensitive operation (export of personal data, …) by re-entering the password."""
    form = ReauthForm()
    target = safe_next(request.args.get("next"))
    if form.validate_on_submit():
        if verify_password(current_user.password_hash, form.password.data):
            session["reauth_at"] = time.time()
            accounts.log_event("reauth", staff=current_user, detail=target[:200])
            db.session.commit()
            return redirect(target)
        accounts.log_event("reauth_failed", staff=current_user)
        db.session.commit()
        form.password.errors.append(_("Wrong password."))
    return render_template("auth/reauth.html", form=form, target=target)


@bp.route("/lang/<code>", methods=["POST"])
def set_language(code: str):  # type: ignore[no-untyped-def]
    if code in LOCALES:
        session["locale"] = code
        if current_user.is_authenticated:
            current_user.locale = code
            db.session.commit()
    return redirect(safe_next(request.form.get("next") or request.referrer and urlsplit(request.referrer).path))


def select_locale() -> str:
    if not has_request_context():
        return current_app.config["BABEL_DEFAULT_LOCALE"]
    if current_user and current_user.is_authenticated:
        return current_user.locale or current_app.config["BABEL_DEFAULT_LOCALE"]
    return session.get("locale") or current_app.config["BABEL_DEFAULT_LOCALE"]


def _is_static() -> bool:
    return request.endpoint == "static" or (request.endpoint or "").endswith(".static")


def _check_session() -> None:
    """A cookie whose server-side session ended (logout, new password, …) is emptied."""
    if not _is_static():
        sessions.check_request()


def _idle_timeout():  # type: ignore[no-untyped-def]
    """Log out a session idle for longer than IDLE_TIMEOUT."""
    if _is_static():
        return None
    if current_user.is_authenticated:
        now = time.time()
        seen = session.get("seen", now)
        if now - seen > current_app.config["IDLE_TIMEOUT"].total_seconds():
            sessions.revoke_current()
            db.session.commit()
            logout_user()
            session.clear()
            flash(_("You were logged out after a period of inactivity."), "info")
            return redirect(url_for("auth.login", next=request.path))
        session["seen"] = now
    return None


class SessionInterface(SecureCookieSessionInterface):
    """Marks the cookie Secure whenever the request came in over HTTPS (or config says so)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"] or (has_request_context() and request.is_secure))


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    app.register_blueprint(bp)
    app.session_interface = SessionInterface()
    app.before_request(_check_session)
    app.before_request(_idle_timeout)
