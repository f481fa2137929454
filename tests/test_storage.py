"""Uploaded files behind the storage interface (models/storage.py): the local folder by default,
any backend named by STORAGE_BACKEND serves uploads, downloads, purges and backups alike."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from models import db
from models.attachment import store
from models.storage import EXTENSION, LocalStorage, storage
from tests.helpers import make_visit
from tests.test_attachments import manager
from tests.test_visits import png
from workflow.retention_batch import _delete


class MemoryStorage:
    """A stand-in for a shared store (an S3-compatible bucket, say): nothing on this host's disk."""

    def __init__(self, app: Flask) -> None:
        self.files: dict[str, bytes] = {}

    def put(self, key: str, data: bytes) -> None:
        self.files.setdefault(key, data)

    def get(self, key: str) -> bytes:
        if key not in self.files:
            raise FileNotFoundError(key)
        return self.files[key]

    def exists(self, key: str) -> bool:
        return key in self.files

    def delete(self, key: str) -> None:
        self.files.pop(key, None)

    def is_empty(self) -> bool:
        return not self.files


@pytest.fixture()
def shared(app: Flask) -> Iterator[MemoryStorage]:
    app.config["STORAGE_BACKEND"] = "tests.test_storage:MemoryStorage"
    app.extensions.pop(EXTENSION, None)
    with app.app_context():
        backend = storage()
    yield backend  # type: ignore[misc]
    app.config["STORAGE_BACKEND"] = ""
    app.extensions.pop(EXTENSION, None)


def test_local_folder_is_the_default_store(app: Flask) -> None:
    with app.app_context():
        assert isinstance(storage(), LocalStorage) and storage().root == Path(app.instance_path)
        with pytest.raises(FileNotFoundError):
            storage().get("../dev-secrets.json")  # a key never leaves the uploads folder


def test_vis_3_uploads_downloads_and_purges_go_through_the_configured_store(
    app: Flask, db_session, login_as, shared: MemoryStorage, tmp_path: Path
) -> None:
    visit, other = make_visit(method="on_site"), make_visit(method="on_site")
    db.session.commit()
    local = Path(app.instance_path) / "uploads"
    on_disk_before = set(local.rglob("*"))  # earlier tests of this worker may have left the same bytes here
    row = store(visit, "signature", png(), "签名.png", manager())
    db.session.commit()
    key = row.path
    assert shared.get(key) == png()
    assert set(local.rglob("*")) == on_disk_before  # nothing written to this host's disk
    response = login_as("engineering").get(f"/attachments/{row.id}")
    assert response.status_code == 200 and response.data == png()

    result = app.test_cli_runner().invoke(args=["backup", "create", str(tmp_path)])
    assert result.exit_code == 0, result.output
    [archive] = tmp_path.glob("wuye-backup-*.tar")
    with tarfile.open(archive) as tar:
        assert tar.extractfile(f"files/{row.path}").read() == png()  # type: ignore[union-attr]

    _delete([("visit", [visit.id])])  # the retention purge's bulk delete takes the file with it
    db.session.commit()
    assert not shared.exists(key)
    assert other.id is not None
