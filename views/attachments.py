"""Download of stored attachments: only for someone who may see the record that owns the file.

The owner's screen decides, exactly as it does for its details page: the user needs the view's
``view`` permission and the record must be one the view would show (its ``get_one`` applies the
view's scope and hides soft-deleted records). Downloads of personal documents (signatures,
scans) are written to the audit trail.
"""

from __future__ import annotations

import io
from typing import Any

from flask import Blueprint, Flask, abort, current_app, redirect, render_template, request, send_file, url_for
from flask_login import current_user

from models import db
from models.attachment import EXTENSIONS, KINDS, OCTET, Attachment, sniff, typed_name
from views.base import SecureModelView
from views.printing import content_disposition
from workflow.audit import record_event

bp = Blueprint("attachments", __name__)


def owner_views(record_type: str) -> list[SecureModelView]:
    return [v for admin in current_app.extensions.get("admin", []) for v in admin._views
            if isinstance(v, SecureModelView) and getattr(v.model, "__tablename__", None) == record_type]


def may_view_owner(row: Attachment) -> int | None:
    """None if the user may see the owning record; otherwise the HTTP status to refuse with."""
    views = owner_views(row.record_type)
    allowed = [v for v in views if v.allowed("view")]
    if not views:
        return 404
    if not allowed:
        return 403
    return None if any(v.get_one(row.record_id) is not None for v in allowed) else 404


@bp.route("/attachments/<int:attachment_id>")
def download(attachment_id: int) -> Any:
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    row = db.session.get(Attachment, attachment_id) if 0 < attachment_id < 2**63 else None
    if row is None:
        abort(404)
    refusal = may_view_owner(row)
    if refusal is not None:
        abort(refusal)
    reason = next(filter(None, (v.download_refusal(row) for v in owner_views(row.record_type))), None)
    if reason is not None:  # e.g. ARC-3: a copy of an archive document needs the manager's approval
        return render_template("errors/403.html", reason=reason), 403
    try:
        data = row.data()
    except FileNotFoundError:
        abort(404)
    kind = KINDS.get(row.kind)
    if kind is None or kind.personal:
        record_event("download", record_type=row.record_type, record_id=row.record_id,
                     comment=f"attachment #{row.id} ({row.kind})")
        db.session.commit()
    content_type, name = served_as(row, data)
    response = send_file(io.BytesIO(data), mimetype=content_type, conditional=False, max_age=0)
    response.headers["Content-Disposition"] = content_disposition(name, inline=False)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "sandbox"  # even if a browser renders it, nothing runs
    response.headers["Cache-Control"] = "private, no-store"
    return response


def served_as(row: Attachment, data: bytes) -> tuple[str, str]:
    """SEC-2: the type the stored bytes declare (read again, never the name) and a download name
    whose extension is that type's, also for rows stored before names were typed."""
    content_type = sniff(data[:64]) or OCTET
    extension = EXTENSIONS.get(content_type, "bin")
    return content_type, typed_name(row.original_filename, content_type) or f"{row.kind}.{extension}"


def register(app: Flask) -> None:
    if "attachments" not in app.blueprints:
        app.register_blueprint(bp)
