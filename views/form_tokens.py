"""One-time tokens on create forms: a form posted twice (double click, back button then 保存
again) creates one record. The token is signed (user, screen, random nonce; valid one day); the
nonce is stored in the creating transaction (models/form_tokens.py), whose unique key refuses a
second use, also when both posts arrive at once."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app
from flask_login import current_user
from itsdangerous import BadSignature, URLSafeTimedSerializer
from wtforms import HiddenField

from models import db
from models.base import utcnow
from models.form_tokens import UsedFormToken

MAX_AGE = timedelta(days=1)


class FormTokenField(HiddenField):
    """Carries the token; never written to the record."""

    def populate_obj(self, obj: Any, name: str) -> None:
        pass


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="create-form-token")


def issue(endpoint: str) -> str:
    return _serializer().dumps({"u": current_user.id, "e": endpoint, "n": secrets.token_hex(16)})


def nonce_of(token: str, endpoint: str) -> str | None:
    """The token's nonce when it is this user's token of this screen and not expired."""
    try:
        data = _serializer().loads(token, max_age=int(MAX_AGE.total_seconds()))
    except BadSignature:
        return None
    if not isinstance(data, dict) or data.get("u") != current_user.id or data.get("e") != endpoint:
        return None
    nonce = data.get("n")
    return nonce if isinstance(nonce, str) and len(nonce) == 32 else None


def spend(nonce: str) -> None:
    """Record the nonce in the creating transaction, just before its commit (a second use raises
    IntegrityError, also when both posts race); tokens past their age are cleared on the way."""
    db.session.execute(sa.delete(UsedFormToken).where(UsedFormToken.used_at < utcnow() - 2 * MAX_AGE))
    db.session.add(UsedFormToken(nonce=nonce))


def used(nonce: str) -> bool:
    return db.session.scalar(sa.select(UsedFormToken.id).where(UsedFormToken.nonce == nonce)) is not None
