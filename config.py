"""Settings from the environment and a settings file; secrets never have a usable default outside
development, and every secret is checked when the app starts (issue 18).

The settings file (``PM_CONFIG``, else ``/etc/wuye.env`` when it exists) holds ``KEY=VALUE`` lines
as systemd's ``EnvironmentFile=`` reads them; the app reads it itself, so a cron line or a shell
without the variables gets the same settings as the service. The process environment wins over
the file.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

SECRET_NAMES = ("SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "BLIND_INDEX_KEY", "AUDIT_KEY")
ENVIRONMENTS = ("development", "production")
DEFAULT_SETTINGS_FILE = Path("/etc/wuye.env")
PRODUCTION_MARKER = "production"  # instance/production: this instance served PM_ENV=production
MIN_SECRET_LENGTH = 32  # characters of SECRET_KEY, BLIND_INDEX_KEY, AUDIT_KEY in production
KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,16}$")
PLACEHOLDERS = {"...", "changeme", "change-me", "secret", "<secret>"}


class SettingsError(click.ClickException, ValueError):
    """A setting the app cannot run with; the CLI prints it as one line (``Error: ...``), no traceback."""

    exit_code = 2


def settings_file(environ: Mapping[str, str]) -> Path | None:
    """``PM_CONFIG`` (must exist), else ``/etc/wuye.env`` when present, else none."""
    named = environ.get("PM_CONFIG")
    if named:
        path = Path(named)
        if not path.is_file():
            raise SettingsError(f"PM_CONFIG names {path}, which is not a readable file")
        return path
    return DEFAULT_SETTINGS_FILE if DEFAULT_SETTINGS_FILE.is_file() else None


def read_settings_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` per line; ``#`` comments, blank lines, an ``export`` prefix and one pair of
    surrounding quotes allowed (the subset systemd's EnvironmentFile= and a shell both read)."""
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"cannot read the settings file {path}: {exc.strerror}") from None
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", key):
            raise SettingsError(f"{path} line {number}: expected KEY=VALUE")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def environment(read_file: bool = True) -> dict[str, str]:
    """The settings the app runs with: the settings file overlaid by the process environment.
    ``read_file=False`` (tests naming their own settings): the process environment only."""
    path = settings_file(os.environ) if read_file else None
    file_values = read_settings_file(path) if path else {}
    return {**file_values, **os.environ}


def instance_path(environ: Mapping[str, str]) -> str | None:
    """``PM_INSTANCE_PATH``: where instance/ lives when not beside the code (None: Flask's default)."""
    named = environ.get("PM_INSTANCE_PATH")
    return str(Path(named).resolve()) if named else None


def environment_name(value: str | None) -> str:
    """``PM_ENV``, case-insensitive; an unknown name is refused rather than read as development."""
    name = (value or "development").strip().lower()
    if name not in ENVIRONMENTS:
        raise SettingsError(f"PM_ENV={value!r} is unknown: use development or production")
    return name


def from_environment(env: Mapping[str, str]) -> dict[str, Any]:
    """Defaults; every value may be overridden by a variable of the same name."""

    def number(name: str, default: str) -> int:
        try:
            return int(env.get(name, default))
        except ValueError:
            raise SettingsError(f"{name}={env.get(name)!r} is not a whole number") from None

    timezone = env.get("TIMEZONE", "Asia/Shanghai")
    values: dict[str, Any] = {
        "PM_ENV": environment_name(env.get("PM_ENV")),
        "SQLALCHEMY_DATABASE_URI": env.get("DATABASE_URL", ""),
        "SQLALCHEMY_ENGINE_OPTIONS": {},
        "TIMEZONE": timezone,
        "BABEL_DEFAULT_LOCALE": env.get("LOCALE", "zh_Hans_CN"),
        "BABEL_DEFAULT_TIMEZONE": timezone,  # display zone; storage is always UTC
        "FIRM_CODE": env.get("FIRM_CODE", "cpm"),
        "FIRM_NAME": env.get("FIRM_NAME", "物业服务有限公司"),  # letterhead of letters (CMP-9 reply)
        # Session cookie: HttpOnly, SameSite=Lax; Secure is set per request when served over HTTPS.
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": env.get("SESSION_COOKIE_SECURE", "") == "1",
        "REMEMBER_COOKIE_DURATION": timedelta(seconds=0),
        "IDLE_TIMEOUT": timedelta(minutes=number("IDLE_TIMEOUT_MINUTES", "30")),
        "PERMANENT_SESSION_LIFETIME": timedelta(hours=12),
        "WTF_CSRF_TIME_LIMIT": None,  # tied to the session instead
        "MAX_CONTENT_LENGTH": 10 * 1024 * 1024,
        # ACC-2 / throttling
        "PASSWORD_MIN_LENGTH": 12,
        # Login attempts per account *and* address (security/throttle.py): 5 per 15 minutes, then
        # the longer tiers; a correct password clears them. Nothing is limited per address alone.
        "LOGIN_MAX_FAILURES_ACCOUNT": 5,
        "LOGIN_FAILURE_WINDOW": timedelta(minutes=15),
        "LOGIN_LIMITS_LONGER": env.get("LOGIN_LIMITS_LONGER", "10 per hour; 20 per day"),
        # Where Flask-Limiter keeps the counts: memory (one host) or e.g. redis://host:6379 so that
        # every app host shares them.
        "RATELIMIT_STORAGE_URI": env.get("RATELIMIT_STORAGE_URI", "memory://"),
        "RATELIMIT_STRATEGY": "moving-window",
        # Reverse proxies in front of the app whose X-Forwarded-For/-Proto are believed (ProxyFix);
        # 0 = none: those headers are ignored.
        "TRUSTED_PROXIES": number("TRUSTED_PROXIES", "0"),
        "RESET_TOKEN_LIFETIME": timedelta(hours=1),
        "ARGON2_TIME_COST": 3,
        "ARGON2_MEMORY_COST": 65536,
        # Mail (ACC-4 notices); mail is sent only when SMTP_HOST is set.
        "SMTP_HOST": env.get("SMTP_HOST", ""),
        "SMTP_PORT": number("SMTP_PORT", "25"),
        "SMTP_USER": env.get("SMTP_USER", ""),
        "SMTP_PASSWORD": env.get("SMTP_PASSWORD", ""),
        "SMTP_SENDER": env.get("SMTP_SENDER", "noreply@localhost"),
        "SMTP_STARTTLS": env.get("SMTP_STARTTLS", "") == "1",
        # Time rules: the in-process sweep (deadlines, escalations, reminders); 0 = off (use cron).
        "SWEEP_INTERVAL_SECONDS": float(env.get("SWEEP_INTERVAL_SECONDS", "0") or 0),
        # Where `flask audit checkpoint` appends the audit chain's signed tip: outside the database
        # and its backups. Empty: instance/audit-checkpoints.jsonl in development; production must set it.
        "AUDIT_CHECKPOINT_FILE": env.get("AUDIT_CHECKPOINT_FILE", ""),
        # Serving (deploy/gunicorn.conf.py reads WEB_BIND, WEB_WORKERS, WEB_THREADS from the environment).
        "WEB_BIND": env.get("WEB_BIND", "127.0.0.1:5000"),
        "WEB_WORKERS": number("WEB_WORKERS", "2"),
        "WEB_THREADS": number("WEB_THREADS", "4"),
        # Request and job log lines on stderr: "text", or "json" (one object per line).
        "LOG_FORMAT": env.get("LOG_FORMAT", "text"),
        # /healthz answers 503 when no sweep finished within this many minutes (0: not checked).
        "HEALTH_SWEEP_MAX_AGE_MINUTES": float(env.get("HEALTH_SWEEP_MAX_AGE_MINUTES", "15")),
        # Where uploaded files are kept (models/storage.py): empty = the instance folder (a folder every
        # app host mounts, for several hosts); or "module:Class" of another backend.
        "STORAGE_BACKEND": env.get("STORAGE_BACKEND", ""),
        # `flask backup create` without DIR writes here (empty: instance/backups).
        "BACKUP_DIR": env.get("BACKUP_DIR", ""),
        # pg_dump / pg_restore of the server's major version (empty: from PATH).
        "PG_BIN_DIR": env.get("PG_BIN_DIR", ""),
        "FLASK_ADMIN_SWATCH": "default",
    }
    values.update({name: env[name] for name in SECRET_NAMES if env.get(name)})
    values["AUDIT_KEYS_RETIRED"] = env.get("AUDIT_KEYS_RETIRED", "")  # AUDIT_KEY rotation: older segments
    return values


def load_secrets(instance_path: str, env: str) -> dict[str, str]:
    """The secrets missing from the settings; in development, generated once into instance/.

    Production refuses to start without them, so a default key can never reach a real firm.
    """
    if env == "production":
        raise SettingsError(
            "PM_ENV=production needs SECRET_KEY, FIELD_ENCRYPTION_KEYS, BLIND_INDEX_KEY"
            " and AUDIT_KEY (environment or settings file)"
        )
    store = Path(instance_path) / "dev-secrets.json"
    stored: dict[str, str] = json.loads(store.read_text()) if store.exists() else {}
    generated = {
        "SECRET_KEY": secrets.token_urlsafe(32),
        "FIELD_ENCRYPTION_KEYS": "k1:" + secrets.token_urlsafe(32),
        "BLIND_INDEX_KEY": secrets.token_urlsafe(32),
        "AUDIT_KEY": secrets.token_urlsafe(32),
    }
    for name in SECRET_NAMES:
        stored.setdefault(name, generated[name])
    store.parent.mkdir(parents=True, exist_ok=True)
    store.write_text(json.dumps(stored, indent=2))
    store.chmod(0o600)
    return stored


def refuse_silent_development(instance_path: str, env: str, environ: Mapping[str, str]) -> None:
    """A command run without the production settings (cron, a bare shell) next to a production
    instance must not invent a development database and keys beside it."""
    marker = Path(instance_path) / PRODUCTION_MARKER
    if env == "production":
        return
    if marker.exists():
        raise SettingsError(
            f"{marker} says this is a production instance but PM_ENV is not production:"
            " set PM_CONFIG to the settings file (or create /etc/wuye.env)"
        )
    if not environ.get("PM_ENV") and environ.get("DATABASE_URL", "").startswith("postgresql"):
        raise SettingsError(
            "DATABASE_URL names a PostgreSQL database but PM_ENV is not production:"
            " set PM_ENV=production (settings file or environment), or PM_ENV=development"
        )


def mark_production(instance_path: str) -> None:
    """Leave ``instance/production`` once production settings passed their checks (see above)."""
    marker = Path(instance_path) / PRODUCTION_MARKER
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("this instance runs PM_ENV=production; see README, A real deployment\n")


def decode_key(material: str) -> bytes:
    """URL-safe or standard base64, padding optional."""
    text = material.strip().replace("+", "-").replace("/", "_")
    if not text or not re.fullmatch(r"[A-Za-z0-9_-]+=*", text):
        raise ValueError("not base64")
    try:
        return base64.urlsafe_b64decode(text.rstrip("=") + "=" * (-len(text.rstrip("=")) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None


def parse_field_keys(spec: str) -> list[tuple[str, bytes]]:
    """``"k2:<b64>,k1:<b64>"`` as (key id, key) pairs, the encrypting key first; SettingsError
    naming the part that is wrong."""
    keys: list[tuple[str, bytes]] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        key_id, sep, material = part.partition(":")
        if not sep or not KEY_ID.fullmatch(key_id):
            raise SettingsError(
                f"FIELD_ENCRYPTION_KEYS: {key_id[:16]!r} is not a key id (letters, digits, - or _,"
                " at most 16) followed by ':' and the key"
            )
        if any(key_id == seen for seen, _ in keys):
            raise SettingsError(f"FIELD_ENCRYPTION_KEYS: key id {key_id!r} appears twice")
        try:
            raw = decode_key(material)
        except ValueError:
            raise SettingsError(f"FIELD_ENCRYPTION_KEYS: key {key_id!r} is not base64") from None
        if len(raw) not in (16, 24, 32):
            raise SettingsError(
                f"FIELD_ENCRYPTION_KEYS: key {key_id!r} is {len(raw)} bytes; it must be 16, 24 or 32 (32 recommended)"
            )
        keys.append((key_id, raw))
    if not keys:
        raise SettingsError("FIELD_ENCRYPTION_KEYS holds no key")
    return keys


def validate_secrets(config: Mapping[str, Any]) -> None:
    """Every secret checked before the app serves or a command runs: a bad key fails here, in one
    line, not at the first encryption. Production also refuses short or placeholder secrets."""
    parse_field_keys(str(config.get("FIELD_ENCRYPTION_KEYS") or ""))
    if config.get("PM_ENV") != "production":
        return
    for name in ("SECRET_KEY", "BLIND_INDEX_KEY", "AUDIT_KEY"):
        value = str(config.get(name) or "")
        if value.strip().lower() in PLACEHOLDERS or len(set(value)) < 8:
            raise SettingsError(
                f"{name} is a placeholder: generate one, e.g. python3 -c"
                " 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        if len(value) < MIN_SECRET_LENGTH:
            raise SettingsError(
                f"{name} is {len(value)} characters; production needs at least {MIN_SECRET_LENGTH} random ones"
            )
    if config.get("SECRET_KEY") in (config.get("AUDIT_KEY"), config.get("BLIND_INDEX_KEY")):
        raise SettingsError("SECRET_KEY must differ from AUDIT_KEY and BLIND_INDEX_KEY")
