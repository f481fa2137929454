"""Security headers on every response (ACC-7 hardening of the deployed path).

* HTML gets a Content-Security-Policy that refuses inline script: pages load script only from
  this site (templates' former inline handlers live in static/js/), plus the few inline blocks
  Flask-Admin writes itself, which carry this request's nonce. Styles may stay inline (Flask-Admin
  and Bootstrap widgets set ``style=``), which cannot run code.
* Every response: nosniff, no framing, same-origin referrers, no powerful browser features.
* A signed-in user's pages are ``Cache-Control: no-store`` (personal data stays out of caches
  and the back button after logout).
* HSTS only when the request really is HTTPS (directly, or from a trusted proxy's
  X-Forwarded-Proto, see security/throttle.py), so plain-HTTP development is not pinned.
* The app sends no ``Server`` header; the production server/proxy decides its own (README).
"""

from __future__ import annotations

import secrets

from flask import Flask, Response, g, request
from flask_login import current_user

PERMISSIONS_POLICY = ("camera=(), microphone=(), geolocation=(), payment=(), usb=(), "
                      "interest-cohort=()")
HSTS = "max-age=31536000; includeSubDomains"


def csp_nonce() -> str:
    """One random nonce per request, for the inline blocks Flask-Admin marks with it."""
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(16)
    return g.csp_nonce


def content_security_policy(nonce: str) -> str:
    return "; ".join((
        "default-src 'self'",
        f"script-src 'self' 'nonce-{nonce}'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ))


def _is_static() -> bool:
    return request.endpoint == "static" or (request.endpoint or "").endswith(".static")


def add_headers(response: Response) -> Response:
    headers = response.headers
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"
    headers["Referrer-Policy"] = "same-origin"
    headers["Permissions-Policy"] = PERMISSIONS_POLICY
    if response.mimetype == "text/html":
        headers["Content-Security-Policy"] = content_security_policy(csp_nonce())
    if not _is_static() and getattr(current_user, "is_authenticated", False):
        headers["Cache-Control"] = "no-store"
    if request.is_secure:
        headers["Strict-Transport-Security"] = HSTS
    headers.pop("Server", None)
    return response


def init_app(app: Flask) -> None:
    app.jinja_env.globals["csp_nonce"] = csp_nonce
    app.after_request(add_headers)
