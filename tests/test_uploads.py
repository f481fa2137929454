"""SEC-2: an uploaded file is stored and served under the type its bytes declare, never its name.

A PDF named ``poly.html`` (a PDF/HTML polyglot) must come back as ``poly.pdf``, as an attachment
with ``nosniff``, so that no browser or desktop ever opens it as a page or a program."""

from __future__ import annotations

import io
from urllib.parse import unquote

import pytest
import sqlalchemy as sa

from models import db
from models.attachment import Attachment, store
from tests.conftest import csrf_token
from tests.helpers import make_visit
from tests.test_attachments import PDF, manager

BAD_NAMES = {"poly.html": "poly.pdf", "invoice.bat": "invoice.pdf", "a.pdf\x00.html": "a.pdf",
             "report.pdf.exe": "report.pdf", "a\u202efdp.exe": "afdp.pdf", "..\\..\\x.svg": "x.pdf"}


def upload(client, visit_id: int, name: str) -> Attachment:
    """The visit's signed scan, sent through the real upload route."""
    response = client.post("/admin/visit/signature/", data={
        "csrf_token": csrf_token(client), "id": visit_id, "file": (io.BytesIO(PDF), name)},
        content_type="multipart/form-data")
    assert response.status_code == 302, response.get_data(as_text=True)
    return db.session.scalars(sa.select(Attachment).order_by(Attachment.id.desc())).first()


def disposition_names(header: str) -> tuple[str, str]:
    """The ASCII ``filename`` and the decoded RFC 6266 ``filename*`` of a Content-Disposition."""
    parts = dict(p.strip().split("=", 1) for p in header.split(";")[1:])
    return parts["filename"].strip('"'), unquote(parts["filename*"].removeprefix("UTF-8''"))


@pytest.mark.parametrize("name", list(BAD_NAMES))
def test_sec_2_upload_under_a_foreign_name_is_stored_and_served_as_its_type(db_session, login_as,
                                                                           name: str) -> None:
    visit = make_visit(method="on_site")
    db.session.commit()
    row = upload(login_as("cs_clerk"), visit.id, name)
    assert row.content_type == "application/pdf" and row.original_filename == BAD_NAMES[name]
    response = login_as("manager").get(f"/attachments/{row.id}")
    assert response.status_code == 200 and response.data == PDF
    assert response.mimetype == "application/pdf"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    header = response.headers["Content-Disposition"]
    assert header.startswith("attachment;")
    assert disposition_names(header) == (BAD_NAMES[name], BAD_NAMES[name])
    assert ".html" not in header and ".exe" not in header and ".bat" not in header and "\\x00" not in header


def test_sec_2_chinese_name_is_sent_per_rfc_6266(db_session, login_as) -> None:
    visit = make_visit(method="on_site")
    db.session.commit()
    row = upload(login_as("cs_clerk"), visit.id, "业主签字单.html")
    assert row.original_filename == "业主签字单.pdf"
    header = login_as("manager").get(f"/attachments/{row.id}").headers["Content-Disposition"]
    ascii_name, name = disposition_names(header)
    assert name == "业主签字单.pdf" and ascii_name.endswith(".pdf") and ascii_name.isascii()


def test_sec_2_a_row_stored_before_the_fix_is_served_under_its_type(db_session, login_as) -> None:
    """Rows written with the old rule keep their name in the database; the download still fixes it."""
    visit = make_visit(method="on_site")
    db.session.commit()
    row = store(visit, "signature", PDF, "x.pdf", manager())
    row.original_filename = "poly.html"  # as the old code stored it
    db.session.commit()
    response = login_as("manager").get(f"/attachments/{row.id}")
    assert response.mimetype == "application/pdf"
    assert disposition_names(response.headers["Content-Disposition"]) == ("poly.pdf", "poly.pdf")


def test_sec_2_a_name_with_nothing_left_gets_the_kind_and_type(db_session, login_as) -> None:
    visit = make_visit(method="on_site")
    db.session.commit()
    row = upload(login_as("cs_clerk"), visit.id, "...")
    assert row.original_filename == "signature.pdf"
