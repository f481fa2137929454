"""Tell a staff member something: always in-app, and by email when SMTP is configured.

Mail goes out only after the transaction that caused it commits, so a change that is rolled
back never produces an email about something that did not happen.
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

from flask import current_app, has_app_context
from sqlalchemy import event
from sqlalchemy.orm import Session

from models.base import db
from models.staff import Notification, Staff

PENDING = "pm_pending_mail"


def notify(staff: Staff, subject: str, body: str = "") -> Notification:
    """Add the in-app notice to the session; the caller's commit makes it real (and mails it)."""
    note = Notification(staff=staff, subject=subject[:200], body=body)
    db.session.add(note)
    if staff.email and current_app.config.get("SMTP_HOST"):
        db.session.info.setdefault(PENDING, []).append((staff.email, subject, body))
    return note


@event.listens_for(Session, "after_commit")
def _send_pending(session: Session) -> None:
    pending = session.info.pop(PENDING, [])
    if pending and has_app_context():
        for to, subject, body in pending:
            send_email(to, subject, body)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(PENDING, None)


def deliver(to: str, subject: str, body: str, attachments: tuple[tuple[bytes, str, str], ...] = (),
            timeout: int = 10) -> None:
    """One mail over the configured SMTP server; ``attachments`` are (data, MIME type, file name).
    Raises when the server refuses or cannot be reached."""
    cfg = current_app.config
    msg = EmailMessage()
    msg["From"] = cfg["SMTP_SENDER"]
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(body or subject)
    for data, mime, name in attachments:
        maintype, subtype = mime.split("/", 1)
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    with smtplib.SMTP(cfg["SMTP_HOST"], cfg["SMTP_PORT"], timeout=timeout) as smtp:
        if cfg.get("SMTP_STARTTLS"):
            smtp.starttls()
        if cfg.get("SMTP_USER"):
            smtp.login(cfg["SMTP_USER"], cfg["SMTP_PASSWORD"])
        smtp.send_message(msg)


def send_email(to: str, subject: str, body: str) -> None:
    try:
        deliver(to, subject, body)
    except (OSError, smtplib.SMTPException) as exc:
        # Mail is a courtesy copy; the in-app notice already holds the message.
        current_app.logger.warning("mail to %s failed: %s", to, exc)
