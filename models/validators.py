"""Domain checks shared by forms, importers and the CLI, so every path refuses the same bad input."""

from __future__ import annotations

import re
from datetime import date

from flask_babel import lazy_gettext as _l

UNIT_CODE = re.compile(r"^[A-Z0-9]{1,4}-(?:B?\d{1,3})-\d{2,5}$")
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"
PHONE = re.compile(r"^\+?[0-9][0-9 -]{5,19}$")


class DomainError(ValueError):
    """A rule broken by user input; ``field`` names the form field to attach the message to."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(str(message))
        self.message = message
        self.field = field


def id_number_checksum(first17: str) -> str:
    total = sum(int(d) * w for d, w in zip(first17, ID_WEIGHTS, strict=True))
    return ID_CHECK[total % 11]


def check_id_number(value: str) -> str:
    """GB 11643 18-digit resident ID: digits, a real birth date and the ISO 7064 check digit."""
    value = (value or "").strip().upper()
    if not re.fullmatch(r"\d{17}[\dX]", value):
        raise DomainError(_l("ID number must be 17 digits followed by a digit or X."), "id_number")
    try:
        born = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        raise DomainError(_l("ID number holds an impossible birth date."), "id_number") from None
    if born.year < 1900 or born > date.today():
        raise DomainError(_l("ID number holds an impossible birth date."), "id_number")
    if id_number_checksum(value[:17]) != value[17]:
        raise DomainError(_l("ID number check digit is wrong."), "id_number")
    return value


def check_unit_code(value: str) -> str:
    value = (value or "").strip().upper()
    if not UNIT_CODE.fullmatch(value):
        raise DomainError(_l("Unit code must read building-floor-room, e.g. A-12-1203."), "code")
    return value


def check_phone(value: str | None, field: str = "phone") -> str | None:
    if not value:
        return value
    value = value.strip()
    if not PHONE.fullmatch(value):
        raise DomainError(_l("Phone number is not valid."), field)
    return value


def check_period(start: date | None, end: date | None) -> None:
    if start and end and end < start:
        raise DomainError(_l("End date cannot be before start date."), "end_date")


def check_length(value: str | None, limit: int, field: str) -> str | None:
    if value is not None and len(value) > limit:
        raise DomainError(_l("Text is too long (at most %(n)d characters).", n=limit), field)
    return value
