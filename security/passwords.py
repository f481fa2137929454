"""ACC-2: password policy and argon2 hashing."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from flask_babel import lazy_gettext as _l

from models.validators import DomainError

COMMON_LIST = Path(__file__).with_name("data") / "common-passwords.txt"


@cache
def common_passwords() -> frozenset[str]:
    """An offline list of commonly used passwords, shipped with the code."""
    return frozenset(
        line.strip().lower()
        for line in COMMON_LIST.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    )


def hasher() -> PasswordHasher:
    cfg = current_app.config
    return PasswordHasher(time_cost=cfg["ARGON2_TIME_COST"], memory_cost=cfg["ARGON2_MEMORY_COST"])


def check_policy(password: str, username: str) -> None:
    """Raise DomainError naming the first rule the password breaks."""
    minimum = current_app.config["PASSWORD_MIN_LENGTH"]
    if len(password or "") < minimum:
        raise DomainError(_l("Password must be at least %(n)d characters.", n=minimum), "password")
    lowered = password.lower()
    if username and username.lower() in lowered:
        raise DomainError(_l("Password must not contain the username."), "password")
    if lowered in common_passwords() or len(set(password)) < 4:
        raise DomainError(_l("Password is too common; choose another."), "password")
    if len(password) > 128:
        raise DomainError(_l("Password must be at most 128 characters."), "password")


def hash_password(password: str) -> str:
    return hasher().hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return hasher().verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def verify_unknown_user(password: str) -> None:
    """Spend the same time as a real check, so timing does not reveal which usernames exist."""
    cfg = current_app.extensions
    if "pm_dummy_hash" not in cfg:
        cfg["pm_dummy_hash"] = hash_password("timing-equaliser-not-a-password")
    verify_password(cfg["pm_dummy_hash"], password)
