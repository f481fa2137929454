"""Settings read from the environment; secrets never have a usable default outside development."""

from __future__ import annotations

import json
import os
import secrets
from datetime import timedelta
from pathlib import Path

SECRET_NAMES = ("SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "BLIND_INDEX_KEY", "AUDIT_KEY")


class Config:
    """Defaults; every value may be overridden by an environment variable of the same name."""

    PM_ENV = os.environ.get("PM_ENV", "development")
    SQLALCHEMY_DATABASE_URI = os.environ.get("DATABASE_URL", "")
    SQLALCHEMY_ENGINE_OPTIONS: dict = {}
    TIMEZONE = os.environ.get("TIMEZONE", "Asia/Shanghai")
    BABEL_DEFAULT_LOCALE = os.environ.get("LOCALE", "zh_Hans_CN")
    BABEL_DEFAULT_TIMEZONE = TIMEZONE  # display zone; storage is always UTC
    FIRM_CODE = os.environ.get("FIRM_CODE", "cpm")
    FIRM_NAME = os.environ.get("FIRM_NAME", "物业服务有限公司")  # letterhead of letters (CMP-9 reply)
    # Session cookie: HttpOnly, SameSite=Lax; Secure is set per request when served over HTTPS.
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = os.environ.get("SESSION_COOKIE_SECURE", "") == "1"
    REMEMBER_COOKIE_DURATION = timedelta(seconds=0)
    IDLE_TIMEOUT = timedelta(minutes=int(os.environ.get("IDLE_TIMEOUT_MINUTES", "30")))
    PERMANENT_SESSION_LIFETIME = timedelta(hours=12)
    WTF_CSRF_TIME_LIMIT = None  # tied to the session instead
    MAX_CONTENT_LENGTH = 10 * 1024 * 1024
    # ACC-2 / throttling
    PASSWORD_MIN_LENGTH = 12
    # Login attempts per account *and* address (security/throttle.py): 5 per 15 minutes, then
    # the longer tiers; a correct password clears them. Nothing is limited per address alone.
    LOGIN_MAX_FAILURES_ACCOUNT = 5
    LOGIN_FAILURE_WINDOW = timedelta(minutes=15)
    LOGIN_LIMITS_LONGER = os.environ.get("LOGIN_LIMITS_LONGER", "10 per hour; 20 per day")
    # Where Flask-Limiter keeps the counts: memory (one host) or e.g. redis://host:6379 so that
    # every app host shares them.
    RATELIMIT_STORAGE_URI = os.environ.get("RATELIMIT_STORAGE_URI", "memory://")
    RATELIMIT_STRATEGY = "moving-window"
    # Reverse proxies in front of the app whose X-Forwarded-For/-Proto are believed (ProxyFix);
    # 0 = none: those headers are ignored.
    TRUSTED_PROXIES = int(os.environ.get("TRUSTED_PROXIES", "0"))
    RESET_TOKEN_LIFETIME = timedelta(hours=1)
    ARGON2_TIME_COST = 3
    ARGON2_MEMORY_COST = 65536
    # Mail (ACC-4 notices); mail is sent only when SMTP_HOST is set.
    SMTP_HOST = os.environ.get("SMTP_HOST", "")
    SMTP_PORT = int(os.environ.get("SMTP_PORT", "25"))
    SMTP_USER = os.environ.get("SMTP_USER", "")
    SMTP_PASSWORD = os.environ.get("SMTP_PASSWORD", "")
    SMTP_SENDER = os.environ.get("SMTP_SENDER", "noreply@localhost")
    SMTP_STARTTLS = os.environ.get("SMTP_STARTTLS", "") == "1"
    # Time rules: the in-process sweep (deadlines, escalations, reminders); 0 = off (use cron).
    SWEEP_INTERVAL_SECONDS = float(os.environ.get("SWEEP_INTERVAL_SECONDS", "0"))
    # Where `flask audit checkpoint` appends the audit chain's signed tip: outside the database and
    # its backups. Empty: instance/audit-checkpoints.jsonl in development; production must set it.
    AUDIT_CHECKPOINT_FILE = os.environ.get("AUDIT_CHECKPOINT_FILE", "")
    FLASK_ADMIN_SWATCH = "default"


def load_secrets(instance_path: str, env: str) -> dict[str, str]:
    """Secrets from the environment; in development, generated once into instance/.

    Production refuses to start without them, so a default key can never reach a real firm.
    """
    values = {name: os.environ[name] for name in SECRET_NAMES if os.environ.get(name)}
    if len(values) == len(SECRET_NAMES):
        return values
    if env == "production":
        missing = ", ".join(n for n in SECRET_NAMES if n not in values)
        raise RuntimeError(f"PM_ENV=production needs these environment variables: {missing}")
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
    return {**stored, **values}
