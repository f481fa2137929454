"""Login throttling and the trusted-proxy setting (ACC-7).

Attempts are counted per *account and address*, with progressive limits (by default 5 per
15 minutes, 10 per hour, 20 per day). An attempt takes its slot atomically *before* the
password is checked (Flask-Limiter's storage: a test-and-increment under a lock in memory, an
atomic command in Redis/Memcached), so parallel guesses cannot all be checked; a correct
password clears the pair's count. Nothing is counted per address alone: an attacker sharing an
address with the firm (a NAT, a proxy) cannot lock out anyone else's account.

Behind a reverse proxy the address is the client's only when ``TRUSTED_PROXIES`` says how many
proxies to believe: Werkzeug's ProxyFix then takes X-Forwarded-For / X-Forwarded-Proto from
that many hops; with the default 0 those headers are ignored.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, current_app, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import RateLimitItem, parse_many
from werkzeug.middleware.proxy_fix import ProxyFix

EXTENSION = "pm_login_limiter"


def _limiter() -> Limiter:
    return current_app.extensions[EXTENSION]


def login_limits() -> list[RateLimitItem]:
    """The progressive limits from settings: the first tier, then the longer ones."""
    cfg = current_app.config
    seconds = int(cfg["LOGIN_FAILURE_WINDOW"].total_seconds())
    spec = f"{cfg['LOGIN_MAX_FAILURES_ACCOUNT']} per {seconds} seconds"
    longer = (cfg.get("LOGIN_LIMITS_LONGER") or "").strip()
    return parse_many(f"{spec}; {longer}" if longer else spec)


def _pair(username: str) -> tuple[str, str, str]:
    return ("login", username, request.remote_addr or "-")


def take_login_slot(username: str) -> int | None:
    """Atomically count one attempt for this account from this address. None when it may go
    on; else the minutes until a slot frees (the password must then not be checked)."""
    strategy = _limiter().limiter
    for item in login_limits():  # tier by tier: a refused attempt takes no slot in longer tiers
        if not strategy.hit(item, *_pair(username)):
            reset_at = strategy.get_window_stats(item, *_pair(username)).reset_time
            return max(1, math.ceil((reset_at - time.time()) / 60))
    return None


def clear_login_slots(username: str) -> None:
    """A correct password: this account's count from this address starts again."""
    strategy = _limiter().limiter
    for item in login_limits():
        strategy.clear(item, *_pair(username))


def reset_all(app: Flask) -> None:
    """Forget every count (tests; an admin unlocking everyone after an incident)."""
    app.extensions[EXTENSION].reset()


class TrustedProxies:
    """WSGI middleware: ProxyFix for ``TRUSTED_PROXIES`` hops (read per request), else nothing."""

    def __init__(self, app: Flask, wsgi_app: Callable[..., Any]) -> None:
        self.app = app
        self.wsgi_app = wsgi_app
        self.fixes: dict[int, ProxyFix] = {}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        hops = int(self.app.config.get("TRUSTED_PROXIES") or 0)
        if hops <= 0:
            return self.wsgi_app(environ, start_response)
        if hops not in self.fixes:
            self.fixes[hops] = ProxyFix(self.wsgi_app, x_for=hops, x_proto=hops, x_host=0, x_port=0, x_prefix=0)
        return self.fixes[hops](environ, start_response)


def init_app(app: Flask) -> None:
    # Only the login check uses the limiter (no default limits, no per-address limits).
    app.extensions[EXTENSION] = Limiter(get_remote_address, app=app)
    app.wsgi_app = TrustedProxies(app, app.wsgi_app)  # type: ignore[method-assign]
