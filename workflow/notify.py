"""Tell a staff member something: always in-app, and by email when SMTP is configured."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

from flask import current_app

from models import Notification, Staff, db


def notify(staff: Staff, subject: str, body: str = "") -> Notification:
    """Add the in-app notice to the session; the caller's commit makes it real."""
    note = Notification(staff=staff, subject=subject[:200], body=body)
    db.session.add(note)
    if staff.email and current_app.config.get("SMTP_HOST"):
        send_email(staff.email, subject, body)
    return note


def send_email(to: str, subject: str, body: str) -> None:
    cfg = current_app.config
    msg = EmailMessage()
    msg["From"] = cfg["SMTP_SENDER"]
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(body or subject)
    try:
        with smtplib.SMTP(cfg["SMTP_HOST"], cfg["SMTP_PORT"], timeout=10) as smtp:
            if cfg.get("SMTP_STARTTLS"):
                smtp.starttls()
            if cfg.get("SMTP_USER"):
                smtp.login(cfg["SMTP_USER"], cfg["SMTP_PASSWORD"])
            smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        # Mail is a courtesy copy; the in-app notice already holds the message.
        current_app.logger.warning("mail to %s failed: %s", to, exc)
