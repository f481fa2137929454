"""What counts as personal data, read from the models (ACC-5, ACC-6).

A column is personal when a model marks it ``info={"personal": True}`` (or ``"sensitive"``), or
stores it encrypted. A row "names a person" when its model says ``personal_label = True``: its
``str()`` shows a name (a resident, a tenant, a caller) or it is a household's confidential file
(an archive). An export that shows any personal column — directly, through a dotted path, as a
related row's label, or through a model property declared in ``derived_from`` — is an export of
personal data and needs the password again. The shared base view asks :func:`touches_personal`
for every export, so no screen can forget it. Anything this module cannot trace (a property
nobody declared) counts as personal: denied by default.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from security.crypto import EncryptedString


def is_personal_column(column: sa.Column) -> bool:
    """Marked personal or sensitive, or encrypted at rest (only personal data is)."""
    return bool(column.info.get("personal") or column.info.get("sensitive")
                or isinstance(column.type, EncryptedString))


def names_a_person(model: type) -> bool:
    """Whether ``str(row)`` shows personal data (the model's ``personal_label`` declaration)."""
    return bool(getattr(model, "personal_label", False))


def touches_personal(model: type, name: str, _seen: frozenset[tuple[type, str]] = frozenset()) -> bool:
    """Whether the shown column ``name`` of ``model`` (column, relationship, dotted path or a
    declared property) carries personal data."""
    if (model, name) in _seen:
        return False  # a declared cycle adds nothing new
    seen = _seen | {(model, name)}
    mapper = sa.inspect(model)
    head, _, rest = name.partition(".")
    if head in mapper.relationships:
        target = mapper.relationships[head].mapper.class_
        return touches_personal(target, rest, seen) if rest else names_a_person(target)
    if head in mapper.column_attrs:
        return any(is_personal_column(c) for c in mapper.column_attrs[head].columns)
    sources = getattr(model, "derived_from", {}).get(head)
    if sources is None:
        return True  # a property nobody traced: assume it shows personal data
    return any(touches_personal(model, source, seen) for source in sources)


def personal_columns_of(model: type, names: Iterable[Any]) -> list[str]:
    """The names among a view's column list (strings or ``(name, label)`` pairs) that are personal."""
    out = []
    for item in names:
        name = item if isinstance(item, str) else item[0]
        if touches_personal(model, name):
            out.append(name)
    return out
