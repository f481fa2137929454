"""The shared attachment store: type by magic bytes, size limits, files outside the web root,
downloads only for those who may see the owning record, audited, and removed with a purged owner."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import current_app

from models import AuditEntry, Staff, db
from models.attachment import MB, Attachment, decode_data_url, sniff, store
from models.validators import DomainError
from tests.conftest import PASSWORD, csrf_token
from tests.helpers import make_visit
from tests.test_visits import data_url, png, said
from workflow import engine

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 64
TYPE_REFUSED = "Only PDF, PNG or JPEG files are accepted (checked by content, not by name)."


def count() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(Attachment))


def manager() -> Staff:
    return db.session.scalar(sa.select(Staff).where(Staff.username == "manager"))


def test_vis_3_type_is_read_from_the_magic_bytes_not_the_name(db_session) -> None:
    visit = make_visit(method="on_site")
    db.session.commit()
    assert (sniff(png()), sniff(PDF), sniff(JPEG)) == ("image/png", "application/pdf", "image/jpeg")
    for data, name in ((b"<html><script>alert(1)</script>", "sig.png"), (b"GIF89a....", "sig.pdf"),
                       (b"MZ\x90\x00", "scan.jpg"), (b"\x89PNG\r\n\x1a\nnot-a-png", "x.png")):
        with pytest.raises(DomainError) as caught:
            store(visit, "signature", data, name, manager())
        assert said(str(caught.value), TYPE_REFUSED)
    db.session.rollback()
    assert count() == 0
    row = store(visit, "signature", JPEG, "photo.txt", manager())  # a JPEG whatever it is called
    assert row.content_type == "image/jpeg"


def test_vis_3_upload_refused_over_http_writes_nothing(db_session, login_as) -> None:
    visit = make_visit(method="on_site")
    db.session.commit()
    client = login_as("cs_clerk")
    response = client.post("/admin/visit/signature/", data={
        "csrf_token": csrf_token(client), "id": visit.id,
        "file": (io.BytesIO(b"<svg onload=alert(1)>"), "signature.png")},
        content_type="multipart/form-data", follow_redirects=True)
    assert said(response.get_data(as_text=True), TYPE_REFUSED)
    assert count() == 0
    digest = hashlib.sha256(b"<svg onload=alert(1)>").hexdigest()
    assert not list((Path(current_app.instance_path) / "uploads").rglob(digest))


def test_vis_3_size_limit_per_kind(db_session) -> None:
    visit = make_visit(method="on_site")
    db.session.commit()
    too_big = PDF + b"0" * (5 * MB)
    with pytest.raises(DomainError) as caught:
        store(visit, "signature", too_big, "big.pdf", manager())
    assert said(str(caught.value), "The file is too large (at most %(n)s MB).", n=5)
    with pytest.raises(DomainError):
        store(visit, "signature", b"", "empty.pdf", manager())
    assert count() == 0


def test_vis_3_files_are_kept_under_the_instance_folder_never_static(app, db_session) -> None:
    visit = make_visit(method="on_site")
    db.session.commit()
    row = store(visit, "signature", png(), "签名.png", manager())
    db.session.commit()
    path = row.file()
    assert path.is_file() and path.read_bytes() == png()
    assert Path(app.instance_path).resolve() in path.parents and path.name == row.sha256
    assert row.path.startswith("uploads/") and len(row.path.split("/")) == 4  # uploads/yyyy/mm/sha256
    static = Path(app.static_folder).resolve() if app.static_folder else None
    assert static is None or static not in path.parents
    assert row.original_filename == "签名.png" and row.size == len(png())
    with pytest.raises(DomainError):
        store(visit, "scan", b"../../etc/passwd", "../../etc/passwd", manager())


def test_vis_3_signature_data_url_must_be_a_png(db_session) -> None:
    assert decode_data_url(data_url(png())) == png()
    for junk in ("", "data:image/svg+xml;base64,PHN2Zz4=", "data:image/png;base64,%%%",
                 "data:image/png;base64," + "QUJD", "javascript:alert(1)"):
        with pytest.raises(DomainError):
            decode_data_url(junk)


def test_vis_3_download_needs_the_right_to_see_the_visit_and_is_audited(db_session, login_as) -> None:
    visit = make_visit(method="on_site")
    db.session.commit()
    row = store(visit, "signature", png(), "张三签名.png", manager())
    db.session.commit()
    url = f"/attachments/{row.id}"
    response = login_as("engineering").get(url)  # BUSINESS reads visits
    assert response.status_code == 200 and response.data == png()
    assert response.mimetype == "image/png" and response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Disposition"].startswith("attachment")
    downloads = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "download")).all()
    assert [(a.record_type, a.record_id) for a in downloads] == [("visit", visit.id)]
    assert login_as("admin").get(url).status_code == 403  # administrators see no business records
    anonymous = login_as("admin").application.test_client().get(url)
    assert anonymous.status_code == 302 and "/login" in anonymous.location
    assert login_as("engineering").get("/attachments/999999").status_code == 404


def test_vis_3_no_download_once_the_visit_is_deleted(db_session, staff_ids, login_as) -> None:
    visit = make_visit(method="on_site")
    db.session.commit()
    row = store(visit, "signature", png(), "sig.png", manager())
    db.session.commit()
    clerk = db.session.get(Staff, staff_ids["cs_clerk"])
    engine.fire(visit, "delete", clerk, "录入错误", password=PASSWORD)
    engine.decide(visit, manager(), True, password=PASSWORD)
    assert visit.deleted_at is not None
    assert login_as("manager").get(f"/attachments/{row.id}").status_code == 404


def test_ret_attachments_go_with_a_purged_visit(db_session) -> None:
    """The retention purge deletes rows with bulk DELETEs; the visit's files go with them."""
    from workflow.retention_batch import _delete

    kept, purged = make_visit(), make_visit(method="on_site")
    db.session.commit()
    mine = store(purged, "signature", png(), "sig.png", manager())
    other = store(kept, "scan", PDF, "scan.pdf", manager())
    db.session.commit()
    path, other_path = mine.file(), other.file()
    _delete([("visit", [purged.id])])
    db.session.commit()
    assert db.session.scalars(sa.select(Attachment.id)).all() == [other.id]
    assert not path.exists() and other_path.exists()


def test_ret_purging_a_help_request_takes_its_repair_visits_and_their_signatures(db_session, staff_ids) -> None:
    """HLP-6 end to end: the approved purge of an old help request removes its work order, the
    order's visits (foreign keys), and those visits' signature rows and files (the store's hook)."""
    from datetime import UTC, datetime

    from models.help_requests import HelpRequest
    from models.retention import RetentionPolicy
    from models.visits import Visit
    from tests.helpers import make_help_request, make_repair_order
    from workflow.retention_batch import approve, list_batch, run_batch

    help_request = make_help_request()
    order = make_repair_order(help_request=help_request)
    visit = make_visit(kind="repair", repair_order=order, method="on_site")
    db.session.commit()
    signature = store(visit, "signature", png(), "sig.png", manager())
    db.session.commit()
    path, visit_id, signature_id = signature.file(), visit.id, signature.id
    old = datetime(2021, 3, 1, tzinfo=UTC)
    db.session.execute(sa.update(HelpRequest).where(HelpRequest.id == help_request.id)
                       .values(state="closed", created_at=old, closed_at=old))
    policy = RetentionPolicy(name="HLP-6", record_type="help_request", amount=2, unit="years",
                             anchor="start_of_next_year", anchor_field="created_at", action="purge")
    db.session.add(policy)
    db.session.commit()
    now = datetime(2026, 11, 1, tzinfo=UTC)
    batch = list_batch(policy, manager(), now)
    approve(batch, manager(), PASSWORD)
    run_batch(batch.id, now=now)
    db.session.expire_all()
    assert db.session.get(Visit, visit_id) is None
    assert count() == 0 and not path.exists()
    # the file's own audit rows (its name) are redacted with the purge, and the chain still verifies
    from models import AuditEntry
    from workflow.audit import verify

    rows = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.record_type == "attachment",
                                                          AuditEntry.record_id == signature_id)).all()
    assert rows and all(r.redacted_at is not None and "sig.png" not in (r.changes or "") for r in rows)
    assert verify(db.engine)[1] == []
