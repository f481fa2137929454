"""Where uploaded files (signatures, scans, drawings) are kept: behind one small interface, so that
every app host can reach them and the backup reads them the same way whatever keeps them.

``LocalStorage`` (the default) keeps them under the instance folder: right for one host, or for
several that mount one shared folder (NFS, CephFS…) at the same path. Another backend (e.g. an
S3-compatible bucket) implements the same five methods and is named by ``STORAGE_BACKEND``
(``module:Class``, built with the app). Keys are the attachment rows' ``path``
(``uploads/<yyyy>/<mm>/<sha256>``); files are content-addressed and never rewritten.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from pathlib import Path
from typing import Protocol

from flask import Flask, current_app

UPLOADS = "uploads"
EXTENSION = "pm_storage"


class Storage(Protocol):
    def put(self, key: str, data: bytes) -> None:
        """Keep ``data`` under ``key``, atomically (a reader never sees half a file); idempotent."""

    def get(self, key: str) -> bytes:
        """The bytes under ``key``; FileNotFoundError when there are none."""

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove ``key``; nothing happens when it is already gone."""

    def is_empty(self) -> bool:
        """No file at all (a restore goes only into an empty store)."""


class LocalStorage:
    """Files under ``<root>/uploads/…``; a key leading outside that folder is refused."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        folder = (self.root / UPLOADS).resolve()
        target = (self.root / key).resolve()
        if folder not in target.parents:
            raise FileNotFoundError(key)
        return target

    def put(self, key: str, data: bytes) -> None:
        target = self.path(key)
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        target = self.path(key)
        if not target.is_file():
            raise FileNotFoundError(key)
        return target.read_bytes()

    def exists(self, key: str) -> bool:
        try:
            return self.path(key).is_file()
        except FileNotFoundError:
            return False

    def delete(self, key: str) -> None:
        try:
            self.path(key).unlink(missing_ok=True)
        except FileNotFoundError:
            return

    def is_empty(self) -> bool:
        folder = self.root / UPLOADS
        return not folder.exists() or not any(p.is_file() for p in folder.rglob("*"))


def storage(app: Flask | None = None) -> Storage:
    """The app's store: ``STORAGE_BACKEND`` when set, else the instance folder (read per call, so an
    app whose instance folder is moved after creation keeps its files there)."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    backend = app.config.get("STORAGE_BACKEND") or "local"
    if backend == "local":
        return LocalStorage(Path(app.instance_path))
    if EXTENSION not in app.extensions:
        module, _, name = backend.partition(":")
        app.extensions[EXTENSION] = getattr(importlib.import_module(module), name)(app)
    return app.extensions[EXTENSION]
