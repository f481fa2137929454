"""Quick setup from Excel (placeholder until the importer lands)."""

from typing import Any


def register(admin: Any) -> None:
    return None
