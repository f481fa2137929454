"""Which form fields are required, read from the model and its rules rather than typed per form.

Flask-Admin marks a field ``*`` when it carries ``InputRequired`` (its converter adds one for a
column that is ``nullable=False`` without a default). Rules a view's ``check_model`` enforces
(e.g. CMP-1: a complaint names its complainant, description, demand…) raise one ``DomainError``
at a time. ``refusals`` runs those checks again with a sample value in each empty field they
name, so a failed save lists every missing field at once, and ``rule_required`` does the same on
a blank record, so the create form marks them before the first save.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from wtforms.validators import InputRequired

from models import db
from models.base import utcnow
from models.validators import DomainError

SAMPLE_TEXT = "样例"


class DomainErrors(DomainError):
    """Several fields refused at once (each a ``DomainError`` naming its field)."""

    def __init__(self, errors: list[DomainError]) -> None:
        super().__init__("; ".join(str(e.message) for e in errors), errors[0].field)
        self.errors = errors


class RuleRequired(InputRequired):
    """Marks a field the model's rules refuse when empty, so Flask-Admin draws its ``*``. It
    checks nothing itself (``check_model`` does, with the rule's own message) and sets no HTML
    ``required`` flag (some rules depend on other fields, e.g. a phone unless the resident has one)."""

    def __init__(self) -> None:
        super().__init__()
        self.field_flags = {}

    def __call__(self, form: Any, field: Any) -> None:
        return None


def is_empty(value: Any) -> bool:
    return value is None or value == [] or (isinstance(value, str) and not value.strip())


def _python_type(model: Any, name: str) -> type | None:
    column = getattr(type(model), "__table__", None)
    column = column.c.get(name) if column is not None else None
    if column is None:
        return None
    kind = getattr(column.type, "impl", column.type)  # a TypeDecorator (UTCDateTime) says ``object``
    try:
        return kind.python_type
    except (AttributeError, NotImplementedError):
        return None


def samples(model: Any, name: str, form: Any = None) -> list[Any]:
    """Plausible values for an empty field, so the rules after it can speak (none known: [])."""
    field = getattr(form, name, None) if form is not None else None
    for choice in getattr(field, "choices", None) or ():
        value = choice[0] if isinstance(choice, tuple | list) else choice
        if not is_empty(value) and value != "__None":
            return [value]
    kind = _python_type(model, name)
    now = utcnow()
    if kind is bool:
        return [True]
    if kind is datetime:  # "when it happened" comes before other times, deadlines after them
        return [now.replace(year=now.year - 1), now + timedelta(days=30)]
    if kind is date:
        return [now.date().replace(year=now.year - 1), now.date() + timedelta(days=30)]
    if kind is int:
        return [1]
    if kind in (float, decimal.Decimal):
        return [kind(1)]
    if kind is str:
        return [SAMPLE_TEXT, "13800138000"]  # words, or digits (a phone number)
    return []


def refusals(
    model: Any, check: Callable[[Any], None], first: DomainError, form: Any = None, limit: int = 60
) -> list[DomainError]:
    """``first`` and the refusals after it: while a refusal names an empty field, fill that field
    with a sample and run ``check`` again. The caller rolls back (the samples are never written)."""

    def tagged(exc: DomainError) -> DomainError:
        exc.empty = bool(exc.field) and is_empty(getattr(model, exc.field, None))  # type: ignore[attr-defined]
        return exc

    found, current, seen = [tagged(first)], first, set()
    with db.session.no_autoflush:
        for _ in range(limit):
            name = current.field
            if not name or name in seen or not is_empty(getattr(model, name, None)):
                break
            seen.add(name)
            current = None
            for value in samples(model, name, form):
                try:
                    setattr(model, name, value)
                    check(model)
                except DomainError as exc:
                    if exc.field == name:
                        continue  # this sample is refused: try the next one
                    if exc.field not in seen:
                        current = exc
                except Exception:  # noqa: BLE001, S112 - a rule that cannot run on samples ends the probe
                    pass
                break
            if current is None:
                break
            found.append(tagged(current))
    return found


def rule_required(model: Any, check: Callable[[Any], None], form: Any = None) -> set[str]:
    """Fields the rules refuse when empty, found on a blank record (never added to the session)."""
    try:
        with db.session.no_autoflush:
            try:
                check(model)
                return set()
            except DomainError as exc:
                first = exc
            except Exception:  # noqa: BLE001
                return set()
            return {e.field for e in refusals(model, check, first, form) if e.field and getattr(e, "empty", False)}
    finally:
        if model in db.session:
            db.session.expunge(model)


def is_required(field: Any) -> bool:
    from flask_admin.helpers import is_required_form_field

    return is_required_form_field(field)


def refused_empty(model: Any, form: Any) -> set[str]:
    """Form fields whose model validator (``@validates``) refuses an empty value."""
    found = set()
    try:
        with db.session.no_autoflush:
            for name in form._fields if form is not None else ():
                if not hasattr(type(model), name):
                    continue
                for empty in (None, ""):
                    try:
                        setattr(model, name, empty)
                    except DomainError as exc:
                        if exc.field in (None, name):
                            found.add(name)
                            break
                    except Exception:  # noqa: BLE001 - e.g. a relationship refusing "" by type
                        break
    finally:
        if model in db.session:
            db.session.expunge(model)
    return found
