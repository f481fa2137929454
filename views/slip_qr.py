"""The release slip's QR code (MOV-4, issue 14): a signed token, never a bare id, in a URL that opens
the slip's gate-check page for a signed-in guard; an anonymous scan gets the login page only.

The token is itsdangerous-signed with the app's secret and a purpose salt, so it cannot be forged
or turned into another slip's; who may open the slip is still the slip screen's permission and
scope. segno draws the code as SVG (a data URL WeasyPrint embeds; nothing fetched).
"""

from __future__ import annotations

import segno
from flask import current_app, url_for
from itsdangerous import BadSignature, URLSafeSerializer

SALT = "release-slip-qr"


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=SALT)


def token_for(slip_id: int) -> str:
    return _serializer().dumps({"slip": slip_id})


def slip_of(token: str) -> int | None:
    """The slip id a token was signed for; None for anything forged, altered or malformed."""
    try:
        data = _serializer().loads(token)
    except BadSignature:
        return None
    value = data.get("slip") if isinstance(data, dict) else None
    return value if isinstance(value, int) and 0 < value < 2**63 else None


def scan_url(slip_id: int) -> str:
    return url_for("release_slip.scan_view", token=token_for(slip_id), _external=True)


def qr_data_uri(text: str) -> str:
    """The QR code of ``text`` as an SVG data URL (medium error correction survives a crease)."""
    return segno.make(text, error="m").svg_data_uri(scale=4, border=2)
