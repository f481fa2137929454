"""Printable forms as PDF: the complaint record sheet 《住户投诉意见表》 (CMP-1, CMP-8) and the help
register 《住户求助登记表》 (HLP-6). Who may view the record may print it; every print is audited.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from pypdf import PdfReader

from models import AuditEntry, db
from tests.helpers import make_complaint, make_help_request, make_unit, make_visit
from tests.test_permissions import reauthenticate
from views.printing import content_disposition

NOV_20 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)  # 10:00 Beijing


def pdf_text(data: bytes) -> str:
    return "".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def cjk_fonts(data: bytes) -> set[str]:
    fonts = set()
    for page in PdfReader(io.BytesIO(data)).pages:
        for ref in page["/Resources"]["/Font"].values():
            font = ref.get_object()
            descriptor = font["/DescendantFonts"][0].get_object()["/FontDescriptor"] \
                if "/DescendantFonts" in font else font.get("/FontDescriptor")
            embedded = descriptor is not None and any(
                k in descriptor.get_object() for k in ("/FontFile", "/FontFile2", "/FontFile3"))
            if "CJK" in str(font["/BaseFont"]) and embedded:
                fonts.add(str(font["/BaseFont"]))
    return fonts


def prints(action_record_type: str) -> list[AuditEntry]:
    return list(db.session.scalars(sa.select(AuditEntry).where(
        AuditEntry.action == "print", AuditEntry.record_type == action_record_type)))


# --- the complaint record sheet ---------------------------------------------------------------------
def test_cmp_1_complaint_sheet_pdf_has_the_form_and_signature_lines(app, db_session, login_as):
    unit = make_unit()
    complaint = make_complaint(unit=unit, received_at=NOV_20, handling_notes="已安排保洁补做并致歉",
                               handled_at=NOV_20 + timedelta(hours=5))
    make_visit(kind="complaint", complaint_id=complaint.id, person_visited="李四", opinion="对处理结果满意")
    db_session.commit()
    number = complaint.number
    response = login_as("cs_clerk").get(f"/admin/print/complaint/{complaint.id}.pdf")
    assert response.status_code == 200, response.status
    assert response.mimetype == "application/pdf" and response.data.startswith(b"%PDF")
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("inline;") and "filename*=UTF-8''" in disposition
    assert "%E4%BD%8F%E6%88%B7%E6%8A%95%E8%AF%89%E6%84%8F%E8%A7%81%E8%A1%A8" in disposition  # 住户投诉意见表
    assert response.headers["Cache-Control"] == "no-store"
    text = pdf_text(response.data).replace(" ", "").replace("\n", "")
    for expected in (number, "张三", "13800138000", "A栋大堂", "保洁班组", "大堂地面连续三天未清洁",
                     "当天清洁并说明原因", "已安排保洁补做并致歉", "李四", "对处理结果满意", "2026-11-2010:00"):
        assert expected in text, expected
    assert "住户投诉意见表" in text  # the form's own name, in any interface language
    assert cjk_fonts(response.data), "the Noto CJK font must be embedded"
    (event,) = prints("complaint")
    assert event.record_id == complaint.id and event.actor_name == "clerk" and number in event.comment


@pytest.mark.parametrize("role", ["admin"])
def test_cmp_1_complaint_sheet_refused_to_who_may_not_view_it(app, db_session, login_as, role):
    complaint = make_complaint(unit=make_unit())
    db_session.commit()
    assert login_as(role).get(f"/admin/print/complaint/{complaint.id}.pdf").status_code == 403
    anonymous = app.test_client().get(f"/admin/print/complaint/{complaint.id}.pdf")
    assert anonymous.status_code == 302 and "/login" in anonymous.location
    assert prints("complaint") == []


def test_cmp_1_complaint_sheet_of_missing_or_deleted_record_is_404(app, db_session, login_as):
    complaint = make_complaint(unit=make_unit(), deleted_at=NOV_20)
    db_session.commit()
    client = login_as("manager")
    assert client.get(f"/admin/print/complaint/{complaint.id}.pdf").status_code == 404
    assert client.get("/admin/print/complaint/999999.pdf").status_code == 404
    assert client.get("/admin/print/complaint/abc.pdf").status_code == 404
    assert prints("complaint") == []


# --- the help register ------------------------------------------------------------------------------
def test_hlp_6_help_register_pdf_lists_the_days_requests(app, db_session, login_as):
    make_help_request(received_at=NOV_20, caller="王五", description="楼道灯不亮")
    make_help_request(received_at=datetime(2026, 11, 21, 15, 59, tzinfo=UTC), caller="赵六",
                      description="电梯异响")  # Saturday 23:59 Beijing: the last day, included
    make_help_request(received_at=datetime(2026, 11, 21, 16, 0, tzinfo=UTC), caller="钱七",
                      description="次日的求助")  # Sunday 00:00 Beijing: outside
    make_help_request(received_at=NOV_20, caller="孙八", description="已删除", deleted_at=NOV_20)
    db_session.commit()
    client = login_as("cs_clerk")
    url = "/admin/print/help-register.pdf?start=2026-11-20&end=2026-11-21"
    first = client.get(url)  # ACC-5: a register of names is personal data: password again
    assert first.status_code == 302 and "/reauth" in first.location
    reauthenticate(client)
    response = client.get(url)
    assert response.status_code == 200 and response.data.startswith(b"%PDF")
    text = pdf_text(response.data).replace(" ", "").replace("\n", "")
    assert "王五" in text and "楼道灯不亮" in text and "赵六" in text
    assert "钱七" not in text and "孙八" not in text
    assert "13800138000" not in text and "138****8000" in text  # ACC-6: masked as in the list
    assert "住户求助登记表" in text and cjk_fonts(response.data)
    assert "20261120-20261121" in response.headers["Content-Disposition"]
    (event,) = prints("help_request")
    assert "(2)" in event.comment and event.actor_name == "clerk"


@pytest.mark.parametrize("query", ["", "?start=2026-11-20", "?start=junk&end=2026-11-21",
                                   "?start=2026-11-21&end=2026-11-20", "?start=2025-01-01&end=2026-11-21",
                                   "?start=9999-12-31&end=9999-12-31"])
def test_hlp_6_help_register_bad_dates_are_explained(app, db_session, login_as, query):
    client = login_as("cs_supervisor")
    response = client.get(f"/admin/print/help-register.pdf{query}")
    assert response.status_code == 400
    assert response.mimetype == "text/html" and 'class="alert' in response.get_data(as_text=True)
    assert prints("help_request") == []


def test_hlp_6_help_register_refused_to_who_may_not_view_help_requests(app, db_session, login_as):
    client = login_as("admin")
    assert client.get("/admin/print/help-register.pdf?start=2026-11-20&end=2026-11-21").status_code == 403
    assert client.get("/admin/print/").status_code == 403
    assert 'href="/admin/print/"' not in client.get("/admin/").get_data(as_text=True)
    clerk = login_as("cs_clerk")
    assert clerk.get("/admin/print/").status_code == 200
    assert 'href="/admin/print/"' in clerk.get("/admin/").get_data(as_text=True)


# --- the machinery ----------------------------------------------------------------------------------
def test_pdf_content_disposition_carries_the_chinese_name():
    header = content_disposition("住户投诉意见表-TS202611-0001.pdf")
    assert header == ("inline; filename=\"-TS202611-0001.pdf\"; "
                      "filename*=UTF-8''%E4%BD%8F%E6%88%B7%E6%8A%95%E8%AF%89%E6%84%8F%E8%A7%81%E8%A1%A8"
                      "-TS202611-0001.pdf")
    assert content_disposition("统计.xlsx", inline=False).startswith('attachment; filename="document.xlsx"')


def test_pdf_reads_no_file_or_url(tmp_path):
    """Defence in depth behind escaping: markup reaching the layout engine can read no local file."""
    from views.printing import html_to_pdf

    sheet = tmp_path / "leak.css"
    sheet.write_text('body::after { content: "TOP-SECRET"; }')
    data = html_to_pdf(f'<html><head><link rel="stylesheet" href="file://{sheet}"></head>'
                       f'<body><p>正文</p><img src="file://{sheet}"></body></html>')
    assert data.startswith(b"%PDF") and "TOP-SECRET" not in pdf_text(data) and "正文" in pdf_text(data)
    control = html_to_pdf('<html><head><style>body::after { content: "TOP-SECRET"; }</style></head></html>')
    assert "TOP-SECRET" in pdf_text(control)  # the probe would show, had the file been read
