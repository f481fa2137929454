"""ACC-4 / ACC-6 / ACC-7: who may do what on every admin screen, proven over HTTP.

The role x endpoint matrix is built from the registered views themselves: every ModelView in
``app.extensions["admin"]`` and every endpoint kind it offers (list, details, create form, create,
edit form, edit, delete, each action, export, each ajax lookup, ajax update), for each of the
eight roles and an anonymous visitor. The expected outcome comes from the view's own
``permissions`` table: allowed -> success (200/302 with the effect), denied -> 403, anonymous
-> 302 to the login page. Every refused write is checked against a snapshot of the database.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask, current_app
from flask.testing import FlaskClient
from flask_admin.model import BaseModelView
from werkzeug.test import TestResponse

from app import create_app
from models import (
    AuditEntry,
    PasswordResetToken,
    ResidentChange,
    RoleChange,
    SecurityEvent,
    Staff,
    Unit,
    VipCommunication,
    VipProfile,
    db,
)
from models.calendar import CalendarOverride, CalendarYear
from models.renovation_patrol import new_patrol_day
from models.retention import RetentionPolicy
from tests.conftest import PASSWORD, ROLE_USERS, checkpoint, csrf_token, make_staff, restore, signed_in
from tests.helpers import (
    NOT_SNAPSHOTTED,
    data_rows,
    make_building,
    make_complaint,
    make_estate,
    make_help_request,
    make_hot_work,
    make_key_custody,
    make_occupancy,
    make_renovation,
    make_repair_order,
    make_resident,
    make_temporary_power,
    make_unit,
    make_violation,
    make_visit,
    valid_id,
)
from views.base import SecureModelView, SecureView
from views.home import HomeView
from views.roles import FRONT_DESK, in_menu
from views.workflow import BULK_PREFIX
from workflow import engine

ANONYMOUS = "anonymous"
ROLES = [*ROLE_USERS, ANONYMOUS]
MISSING_ID = 999_999
# Audit rows may legitimately be added on any request (ACC-7); every other table must hold still.


# --- the views, read from the app ---------------------------------------------------------------
def model_views(app: Flask) -> list[BaseModelView]:
    return [v for admin in app.extensions["admin"] for v in admin._views if isinstance(v, BaseModelView)]


def find_view(app: Flask, endpoint: str) -> SecureModelView:
    for view in model_views(app):
        if view.endpoint == endpoint:
            return view  # type: ignore[return-value]
    raise LookupError(endpoint)


def _catalog() -> list[str]:
    """The registered model screens, read at collection time from an app that never opens its DB."""
    app = create_app({
        "TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://", "SERVER_NAME": "localhost",
        "SECRET_KEY": "collection-only", "FIELD_ENCRYPTION_KEYS": "t1:" + "A" * 43,
        "BLIND_INDEX_KEY": "collection-only",
        "AUDIT_KEY": "test-audit-key",
    })
    return [v.endpoint for v in model_views(app)]


ENDPOINTS = _catalog()


# --- data every screen can act on ---------------------------------------------------------------
def seed(staff_ids: dict[str, int]) -> dict[str, int]:
    """One row per screen (keyed by endpoint) plus a few helpers; returns their ids."""
    estate = make_estate()
    building = make_building(estate)
    unit = make_unit(building)
    spare_unit = make_unit(building, code="A-12-1204")  # nothing refers to it: deletable
    from models.archives import Archive  # ARC-13 gave it an archive; a unit from before the rule has none

    db.session.execute(sa.delete(Archive).where(Archive.unit_id == spare_unit.id))
    resident = make_resident(emergency_contact="王母", emergency_phone="13600136000")
    other = make_resident(name="李四", phone="13900139000", id_number=valid_id(2))
    occupancy = make_occupancy(unit, resident)
    vip = VipProfile(resident=resident, birthday=date(1980, 1, 1), preferences="喜静")
    db.session.add(vip)
    db.session.flush()
    contact = VipCommunication(profile=vip, summary="电话沟通", staff_id=staff_ids["cs_clerk"])
    db.session.add(contact)
    db.session.flush()
    ids = {
        "estate": estate.id, "building": building.id, "unit": unit.id, "spare_unit": spare_unit.id,
        "resident": resident.id, "other_resident": other.id, "occupancy": occupancy.id,
        "resident_change": db.session.scalar(sa.select(sa.func.min(ResidentChange.id))),
        "vip": vip.id, "vip_contact": contact.id, "staff": staff_ids["cs_clerk"],
        "role_change": db.session.scalar(sa.select(sa.func.min(RoleChange.id))),
        "security_event": db.session.scalar(sa.select(sa.func.min(SecurityEvent.id))),
        "key_custody": make_key_custody(unit=unit, resident=resident).id,
        "visit": make_visit(unit=unit).id,
    }
    calendar_day = CalendarOverride(estate=estate, day=date(2026, 2, 14), kind="off", reason="园区统一放假")
    calendar_year = CalendarYear(year=2027, note="国务院办公厅通知")
    db.session.add_all([calendar_day, calendar_year])
    db.session.flush()
    ids["calendar"], ids["calendar_year"] = calendar_day.id, calendar_year.id
    policy = RetentionPolicy(name="钥匙保存期", record_type="key_custody", amount=1, unit="years", anchor="closed",
                             anchor_field="closed_at", action="purge")
    db.session.add(policy)
    db.session.flush()
    ids["retention_policy"] = policy.id
    ids["help_request"] = make_help_request(unit=unit).id  # HLP: a general request, just received
    ids["repair_order"] = make_repair_order(unit=unit).id
    ids["complaint"] = make_complaint(unit=unit, resident=resident).id  # CMP: received, minor
    ren = make_renovation(unit=unit, applicant=resident)  # REN: an application being prepared
    ids["renovation"] = ren.id
    ids["renovation_hot_work"] = make_hot_work(ren).id
    ids["renovation_power"] = make_temporary_power(ren).id
    patrol_day = new_patrol_day(ren, date.today())  # REN-11: made by the sweep
    db.session.add(patrol_day)
    db.session.flush()
    ids["renovation_patrol_day"] = patrol_day.id
    ids["violation"] = make_violation(unit=unit, resident=resident).id  # VIO: reported, general
    ids.update(__import__("tests.test_moving").test_moving.permission_rows(unit, resident, other, occupancy))  # MOV
    ids.update(__import__("tests.test_archives").test_archives.permission_rows(unit, staff_ids))  # ARC
    ids.update(__import__("tests.test_duty").test_duty.permission_rows(unit, staff_ids))  # DTY
    ids["audit"] = db.session.scalar(sa.select(sa.func.min(AuditEntry.id)))
    db.session.commit()
    assert all(ids.values()), ids
    return ids


SEEDED_FOR_SECONDS = 300  # built afresh after that, so no time limit in the data runs out


@pytest.fixture()
def seeded(app: Flask) -> Iterator[tuple[dict[str, int], dict[str, int]]]:
    """``(staff_ids, ids)``: the accounts and ``seed``'s rows, as ``staff_ids`` + ``seed`` make them.

    Built once per worker (and again after ``SEEDED_FOR_SECONDS``) and restored from a checkpoint
    for every test, so each test still starts from exactly this data, whatever the last one wrote.
    """
    cached = app.extensions.get("pm_test_seeded")
    if cached is None or time.monotonic() - cached[3] > SEEDED_FOR_SECONDS:
        staff_ids = make_staff(app)
        with app.test_request_context():
            ids = seed(staff_ids)
            db.session.remove()
        cached = app.extensions["pm_test_seeded"] = (staff_ids, ids, checkpoint(app), time.monotonic())
    else:
        restore(app, cached[2])
    with app.test_request_context():
        yield dict(cached[0]), dict(cached[1])
        db.session.remove()


RENOVATION_FORM = {"scope": "厨卫改造", "contractor": "安居装饰", "contractor_contact": "李工",
                   "contractor_phone": "13900139000", "planned_start": "2026-12-01", "planned_end": "2026-12-31",
                   "fees_paid_until": "2026-12-31", "fees_confirmed_by": "王会计", "pledge_signed": "y",
                   "drawing_lighting": "y"}
# Valid form data per screen, with the field names the scaffolded forms use (relations by id).
CREATE = {
    **__import__("tests.test_archives").test_archives.PERMISSION_CREATE,  # ARC
    **__import__("tests.test_duty").test_duty.PERMISSION_CREATE,  # DTY
    "estate": lambda ids: {"code": "newest", "name": "新花园", "kind": "office", "address": "深圳"},
    "building": lambda ids: {"estate": ids["estate"], "code": "B", "name": "B栋", "floors": "18"},
    "unit": lambda ids: {"building": ids["building"], "code": "A-3-301", "floor": "3", "area": "75.5",
                         "use": "residential"},
    "resident": lambda ids: {"name": "王五", "gender": "female", "phone": "13700137000",
                             "id_number": valid_id(3), "native_place": "广东"},
    "occupancy": lambda ids: {"unit": ids["unit"], "resident": ids["other_resident"], "kind": "tenant",
                              "start_date": "2024-03-01", "end_date": "", "note": ""},
    "vip": lambda ids: {"resident": ids["other_resident"], "birthday": "1985-05-05", "preferences": "",
                        "special_requirements": ""},
    "vip_contact": lambda ids: {"profile": ids["vip"], "summary": "上门拜访"},
    "calendar": lambda ids: {"estate": ids["estate"], "day": "2026-03-09", "kind": "off", "reason": "年会"},
    "retention_policy": lambda ids: {"name": "投诉保存期", "record_type": "complaint", "condition": "",
                                     "amount": "", "unit": "years", "anchor": "closed", "anchor_field": "closed_at",
                                     "action": "purge", "columns": "", "keep_forever": "y", "active": "y",
                                     "note": ""},
    "calendar_year": lambda ids: {"estate": "__None", "year": "2030", "note": "国务院办公厅通知"},
    "key_custody": lambda ids: {"unit": ids["unit"], "resident": ids["resident"], "tag_no": "K-NEW",
                                "description": "车库钥匙", "key_count": "1", "permitted_use": "",
                                "deposited_at": "2026-11-20 09:00:00"},
    "help_request": lambda ids: {"category": "daily", "caller": "王五", "caller_phone": "13700137000",
                                 "description": "钥匙锁在家里", "received_at": "2026-11-20 09:00:00"},
    "repair_order": lambda ids: {"unit": ids["unit"], "fault": "楼道灯不亮", "location": "A栋12楼",
                                 "reported_at": "2026-11-20 09:00:00"},
    "visit": lambda ids: {"kind": "survey", "unit": ids["unit"], "method": "phone", "visited_at": "2026-11-20 09:00",
                          "visitor": ids["staff"], "person_visited": "王五", "opinion": "满意", "satisfied": "y"},
    "violation": lambda ids: {"occurred_at": "2026-11-20 09:00:00", "unit": ids["unit"], "location": "A栋车库",
                              "kind": "order", "sub_kind": "parking", "description": "占用消防车道停车",
                              "witness": "保安", "severity": "general"},
    "complaint": lambda ids: {"received_at": "2026-11-20 09:00:00", "channel": "phone", "unit": ids["unit"],
                              "complainant_name": "王五", "contact_phone": "13700137000",
                              "occurred_at": "2026-11-19 20:00:00", "location": "A栋大堂", "subject": "保洁班组",
                              "description": "大堂积水", "demand": "尽快清理", "category": "cleaning",
                              "severity": "minor", "about_property": "y", "read_back_confirmed": "y"},
    "renovation": lambda ids: {**RENOVATION_FORM, "unit": ids["unit"], "applicant": ids["resident"]},
    "renovation_hot_work": lambda ids: {"renovation": ids["renovation"], "work": "焊接", "location": "阳台",
                                        "starts_at": "2026-12-01 09:00", "ends_at": "2026-12-01 11:00",
                                        "operator": "焊工赵", "fire_watch": "保安钱", "extinguishers_ready": "y",
                                        "lead_name": "队长孙", "lead_phone": "13800138000", "lead_id_no": "T44120219"},
    "renovation_power": lambda ids: {"renovation": ids["renovation"], "purpose": "切割机临时用电", "load_kw": "5"},
    "move_in": lambda ids: {"unit": ids["unit"], "resident": ids["other_resident"], "kind": "tenant",
                            "move_in_date": "2026-11-20", "id_checked": "y", "lease_no": "ZL-NEW", "lease_end": "",
                            "owner_confirmation": "张三"},
    "move_out": lambda ids: {"occupancy": ids["move_out_occupancy"], "planned_date": "2026-12-20", "goods": "书桌"},
    "release_slip": lambda ids: {"unit": ids["unit"], "carrier": "搬家公司", "goods": "旧沙发", "goods_checked": "y"},
    "move_damage": lambda ids: {"unit": ids["unit"], "move_in": "__None", "move_out": "__None", "mover": "搬家公司",
                                "description": "墙面划伤", "amount": "120.00", "restore_by": "2026-12-01 18:00"},
    "staff": lambda ids: {"username": "newhire", "full_name": "新同事", "department": "cs",
                          "roles": "cs_clerk", "password": "Another-Strong-Pass-7"},
}
EDIT = {
    **__import__("tests.test_archives").test_archives.PERMISSION_EDIT,  # ARC
    **__import__("tests.test_duty").test_duty.PERMISSION_EDIT,  # DTY
    "estate": lambda ids: {"code": "demo", "name": "改名花园", "kind": "residential", "address": ""},
    "building": lambda ids: {"estate": ids["estate"], "code": "A", "name": "A座", "floors": "20"},
    "unit": lambda ids: {"building": ids["building"], "code": "A-12-1203", "floor": "12", "area": "90.25",
                         "use": "residential"},
    "resident": lambda ids: {"name": "张三丰", "gender": "male", "phone": "13800138000", "id_number": ""},
    "occupancy": lambda ids: {"unit": ids["unit"], "resident": ids["resident"], "kind": "owner",
                              "start_date": "2024-01-01", "end_date": "2025-01-01", "note": "搬离"},
    "vip": lambda ids: {"resident": ids["resident"], "birthday": "1980-01-01", "preferences": "喜茶",
                        "special_requirements": ""},
    "calendar": lambda ids: {"estate": ids["estate"], "day": "2026-02-14", "kind": "work", "reason": "改为上班"},
    "retention_policy": lambda ids: {"name": "钥匙保存期", "record_type": "key_custody",
                                     "condition": '{"state": ["returned", "lost"]}', "amount": "2", "unit": "years",
                                     "anchor": "closed", "anchor_field": "closed_at", "require_closed": "y",
                                     "action": "purge", "columns": "", "active": "y", "note": "延长"},
    "calendar_year": lambda ids: {"estate": "__None", "year": "2027", "note": "国务院办公厅通知（已核对）"},
    "key_custody": lambda ids: {"unit": ids["unit"], "resident": ids["resident"], "tag_no": "K-A-12-1203",
                                "description": "入户门钥匙（两把）", "key_count": "2", "permitted_use": "紧急维修",
                                "deposited_at": "2026-11-20 09:00:00"},
    "help_request": lambda ids: {"category": "daily", "caller": "张三", "caller_phone": "13800138000",
                                 "description": "门禁卡失灵（已核实）", "received_at": "2026-11-20 09:00:00"},
    "repair_order": lambda ids: {"unit": ids["unit"], "fault": "厨房水龙头漏水（总阀）", "location": "A-12-1203 厨房",
                                 "reported_at": "2026-11-20 09:00:00", "materials": "生料带"},
    "visit": lambda ids: {"kind": "survey", "unit": ids["unit"], "method": "phone", "visited_at": "2026-11-20 10:00",
                          "visitor": ids["staff"], "person_visited": "张三", "opinion": "建议增加绿化"},
    "violation": lambda ids: {"occurred_at": "2026-11-20 09:00:00", "unit": ids["unit"], "location": "A栋12层",
                              "kind": "hygiene", "sub_kind": "clutter", "description": "楼道堆放杂物（已核实）",
                              "witness": "保安 李四", "severity": "general"},
    "complaint": lambda ids: {"received_at": "2026-11-20 09:00:00", "channel": "visit", "unit": ids["unit"],
                              "complainant_name": "张三", "contact_phone": "13800138000",
                              "occurred_at": "2026-11-20 01:00:00", "location": "A栋大堂", "subject": "保洁班组",
                              "description": "大堂地面连续三天未清洁（已核实）", "demand": "当天清洁",
                              "category": "cleaning", "severity": "minor", "about_property": "y",
                              "read_back_confirmed": "y"},
    "renovation": lambda ids: {**RENOVATION_FORM, "unit": ids["unit"], "applicant": ids["resident"],
                               "scope": "厨卫改造（加吊顶）"},
    "renovation_hot_work": lambda ids: {"renovation": ids["renovation"], "work": "切割", "location": "厨房",
                                        "starts_at": "2026-12-01 09:00", "ends_at": "2026-12-01 12:00",
                                        "operator": "焊工赵", "fire_watch": "保安钱", "extinguishers_ready": "y",
                                        "lead_name": "队长孙", "lead_phone": "13800138000", "lead_id_no": "T44120219"},
    "renovation_power": lambda ids: {"renovation": ids["renovation"], "purpose": "电锯临时用电", "load_kw": "3"},
    "move_in": lambda ids: {"unit": ids["unit"], "resident": ids["other_resident"], "kind": "owner",
                            "move_in_date": "2026-11-21", "id_checked": "y", "lease_no": "", "lease_end": "",
                            "owner_confirmation": ""},
    "move_out": lambda ids: {"occupancy": ids["move_out_occupancy"], "planned_date": "2026-12-21",
                             "goods": "沙发（已核对）"},
    "move_damage": lambda ids: {"unit": ids["unit"], "move_in": "__None", "move_out": "__None", "mover": "搬家公司",
                                "description": "电梯划伤（已核实）", "amount": "150.00",
                                "restore_by": "2026-12-02 18:00"},
    "staff": lambda ids: {"full_name": "改名 测试", "department": "cs", "roles": "cs_clerk", "active": "1"},
}
# Actions with a visible effect: which table gains a row when the action runs.
ACTION_EFFECTS = {("staff", "issue_reset"): PasswordResetToken}


# --- reading the database as the requests left it -----------------------------------------------
def snapshot() -> dict[str, list[tuple]]:
    """Every row of every table (audit log aside), read through a fresh connection; empty tables,
    found in one query, are left out."""
    with db.engine.connect() as conn:
        filled = current_app.extensions["pm_test_wiper"].filled(conn)
        rows = {
            t.name: [tuple(r) for r in conn.execute(data_rows(t))]
            for t in db.metadata.sorted_tables if t.name in filled and t.name not in NOT_SNAPSHOTTED
        }
        return {name: found for name, found in rows.items() if found}


def count(model: type) -> int:
    with db.engine.connect() as conn:
        return conn.scalar(sa.select(sa.func.count()).select_from(model))


def fetch(model: type, pk: int) -> Any:
    db.session.rollback()  # drop the test's own view of the data
    return db.session.get(model, pk)


def messages(response: TestResponse) -> str:
    """Flashed alerts and field errors of a page, for assertion messages."""
    html = response.get_data(as_text=True)
    found = re.findall(r'<div class="alert[^"]*"[^>]*>(.*?)</div>', html, re.S)
    found += re.findall(r'<div class="invalid-feedback">(.*?)</div>', html, re.S)
    return " | ".join(re.sub(r"<[^>]+>|\s+", " ", f).replace("×", "").strip() for f in found)


# --- the matrix ----------------------------------------------------------------------------------
ENDPOINT_KIND_PERMISSION = {
    "list": "view", "details": "view", "create_form": "create", "create": "create",
    "edit_form": "edit", "edit": "edit", "delete": "delete", "export": "export", "ajax_update": "edit",
}
WRITES = {"create", "edit", "delete", "ajax_update"}
# The Flask-Admin endpoint behind each kind, as ``SecureModelView.needs_reauth`` names it (ACC-5).
FLASK_ADMIN_ENDPOINT = {
    "list": "index_view", "details": "details_view", "create_form": "create_view", "create": "create_view",
    "edit_form": "edit_view", "edit": "edit_view", "delete": "delete_view", "export": "export",
    "ajax_update": "ajax_update",
}


def needs_reauth(view: SecureModelView, kind: str) -> bool:
    name = "action_view" if kind.startswith("action:") else FLASK_ADMIN_ENDPOINT.get(kind, kind.split(":")[0])
    return view.needs_reauth(name)  # declared endpoints, and exports that show personal data


def reauthenticate(client: FlaskClient) -> None:
    """ACC-5: type the password again, as the reauth page asks before a sensitive operation."""
    response = client.post("/reauth", data={"csrf_token": csrf_token(client), "password": PASSWORD})
    assert response.status_code == 302, response.status


def kinds(view: SecureModelView) -> list[str]:
    """Every endpoint kind the view offers, reads first, then writes, deletions last."""
    actions = [name for name in view._actions_data if name != "delete"]
    return [
        "list", "details", "create_form", "edit_form", "export",
        *(f"ajax_lookup:{name}" for name in view._form_ajax_refs),
        "ajax_update", "edit", "create",
        *(f"action:{name}" for name in actions),
        *(["action:delete"] if "delete" in view._actions_data else []),
        "delete",
    ]


def permission_of(kind: str) -> str:
    if kind.startswith("ajax_lookup:"):
        return "lookup"
    if kind == "action:delete":
        return "delete"
    if kind.startswith("action:"):
        return kind
    return ENDPOINT_KIND_PERMISSION[kind]


def allowed(view: SecureModelView, role: str, permission: str) -> bool:
    """The whole screen needs "view"; each endpoint then needs its own permission. A workflow
    step offered as a bulk action is granted by the engine's roles for that transition."""
    perms = view.permissions
    if permission == "lookup":  # ajax lookups serve form fields: readers who also create or edit
        return role in perms.get("view", ()) and (role in perms.get("create", ()) or role in perms.get("edit", ()))
    if permission.startswith("action:" + BULK_PREFIX):
        wf = engine.workflow_of(view.model)
        t = wf.transition(permission.split(":", 1)[1][len(BULK_PREFIX):])
        return role in perms.get("view", ()) and role in engine.roles_for(wf, t)
    return role in perms.get("view", ()) and role in perms.get(permission, ())


def request_for(client: FlaskClient, view: SecureModelView, kind: str, ids: dict[str, int],
                token: str) -> TestResponse:
    base = view.url
    target = ids.get(view.endpoint, MISSING_ID)
    if kind == "list":
        return client.get(f"{base}/")
    if kind == "details":
        return client.get(f"{base}/details/?id={target}")
    if kind == "create_form":
        return client.get(f"{base}/new/")
    if kind == "edit_form":
        return client.get(f"{base}/edit/?id={target}")
    if kind == "export":
        return client.get(f"{base}/export/csv/")
    if kind.startswith("ajax_lookup:"):
        return client.get(f"{base}/ajax/lookup/?name={kind.split(':', 1)[1]}&query=A")
    if kind == "ajax_update":
        return client.post(f"{base}/ajax/update/", data={
            "csrf_token": token, "list_form_pk": str(target), "name": "hacked", "code": "hacked"})
    if kind == "create":
        data = CREATE[view.endpoint](ids) if view.endpoint in CREATE else {}
        return client.post(f"{base}/new/", data={"csrf_token": token, **data})
    if kind == "edit":
        data = EDIT[view.endpoint](ids) if view.endpoint in EDIT else {}
        row = fetch(view.model, target)
        version = str(getattr(row, "version", "")) if row is not None else ""
        return client.post(f"{base}/edit/?id={target}", data={  # the password: ACC-8's important fields
            "csrf_token": token, "version": version, "confirm_password": PASSWORD, **data})
    if kind == "delete":
        return client.post(f"{base}/delete/", data={"csrf_token": token, "id": str(target)})
    if kind.startswith("action:"):
        return client.post(f"{base}/action/", data={
            "csrf_token": token, "action": kind.split(":", 1)[1], "rowid": str(target)})
    raise AssertionError(kind)


def check_allowed(view: SecureModelView, kind: str, response: TestResponse, ids: dict[str, int],
                  before: dict[str, Any]) -> None:
    """What success looks like for each kind of endpoint."""
    where = f"{view.endpoint} {kind}: {response.status} {messages(response)}"
    model = view.model
    target = ids.get(view.endpoint, MISSING_ID)
    status = response.status_code
    if kind == "details" and not view.can_view_details:
        assert status == 302, where
    elif kind in ("list", "details", "create_form", "edit_form"):
        assert status == 200, where
    elif kind == "export":
        assert status == 200 and response.mimetype == "text/csv", where
        header = next(csv.reader(io.StringIO(response.get_data(as_text=True))))
        assert len(header) == len(view.column_export_list), where
    elif kind.startswith("ajax_lookup:"):
        assert status == 200, where
        assert isinstance(json.loads(response.get_data(as_text=True)), list), where
    elif kind == "ajax_update":
        # Allowed to edit, but inline editing does not exist: nothing to update.
        assert status == 404, where
        assert snapshot() == before["snapshot"], where
    elif kind == "create":
        assert status == 302, where
        assert count(model) == before["count"] + 1, where
    elif kind == "edit":
        assert status == 302, where
        assert fetch(model, target).version > before["version"], where
    elif kind in ("delete", "action:delete"):
        assert status == 302, where
        assert fetch(model, target) is None, where
    elif kind.startswith("action:"):
        assert status == 302, where
        effect = ACTION_EFFECTS.get((view.endpoint, kind.split(":", 1)[1]))
        if effect is not None:
            assert count(effect) == before["effect"] + 1, where
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_acc_4_role_endpoint_matrix(app, seeded, subtests, endpoint, role):
    """ACC-4: each role gets exactly what the view's permission table grants, nothing else."""
    _staff_ids, ids = seeded
    # a row only its author may see (e.g. an archive access request) is named per role: "endpoint@role"
    ids.update({key.split("@")[0]: value for key, value in ids.items() if key.endswith(f"@{role}")})
    view = find_view(app, endpoint)
    client = app.test_client() if role == ANONYMOUS else signed_in(app, role)
    token = csrf_token(client)
    reauthenticated = False
    for kind in kinds(view):
        with subtests.test(msg=kind):
            if kind in ("create", "edit") and role != ANONYMOUS and allowed(view, role, permission_of(kind)):
                recipes = CREATE if kind == "create" else EDIT
                assert view.endpoint in recipes, f"add a {kind} recipe for {view.endpoint} to {__name__}"
            write = kind in WRITES or kind.startswith("action:")
            before: dict[str, Any] = {"snapshot": snapshot() if write else None, "count": count(view.model)}
            row = fetch(view.model, ids.get(endpoint, MISSING_ID))
            before["version"] = getattr(row, "version", 0) if row is not None else 0
            effect = ACTION_EFFECTS.get((endpoint, kind.split(":", 1)[-1]))
            before["effect"] = count(effect) if effect is not None else 0

            response = request_for(client, view, kind, ids, token)
            where = f"{endpoint} {kind} as {role}: {response.status} {messages(response)}"
            if (role != ANONYMOUS and allowed(view, role, permission_of(kind)) and needs_reauth(view, kind)
                    and not reauthenticated):
                # ACC-5: first sent to confirm the password, then let through.
                assert response.status_code == 302 and "/reauth" in response.location, where
                if write:
                    assert snapshot() == before["snapshot"], where
                reauthenticate(client)
                reauthenticated = True
                response = request_for(client, view, kind, ids, token)
                where = f"{endpoint} {kind} as {role}: {response.status} {messages(response)}"

            if role == ANONYMOUS:
                assert response.status_code == 302, where
                assert response.location.split("?")[0].endswith("/login"), where
            elif kind == "ajax_update" and role in view.permissions.get("edit", ()):
                check_allowed(view, kind, response, ids, before)
            elif kind != "ajax_update" and allowed(view, role, permission_of(kind)):
                check_allowed(view, kind, response, ids, before)
            else:
                assert response.status_code == 403, where
            if write and not (role != ANONYMOUS and kind != "ajax_update"
                              and allowed(view, role, permission_of(kind))):
                assert snapshot() == before["snapshot"], f"{where}: a refused write changed the database"


def test_acc_4_every_admin_view_is_secured(app):
    """Deny by default: every screen stands on the secured base views, and declares a view permission."""
    for admin in app.extensions["admin"]:
        for view in admin._views:
            assert isinstance(view, SecureModelView | SecureView | HomeView), view
            if isinstance(view, SecureModelView | SecureView):
                assert "view" in view.permissions, view.endpoint


def test_acc_4_matrix_has_recipes_for_every_screen(app):
    """A new screen must tell the matrix how to create and edit a row of it, or it is not tested."""
    for view in model_views(app):
        perms = view.permissions
        if perms.get("create"):
            assert view.endpoint in CREATE, f"add a create recipe for {view.endpoint}"
        if perms.get("edit"):
            assert view.endpoint in EDIT, f"add an edit recipe for {view.endpoint}"


# --- menus ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("role", list(ROLE_USERS))
def test_acc_4_each_role_sees_only_its_menus(app, login_as, role):
    """ACC-4: the menu shows the screens a role may open and works with (views/roles.py MENUS); the
    others answer 403, and a screen left out of the role's menu still opens (menus only hide)."""
    client = login_as(role)
    home = client.get("/admin/")
    assert home.status_code == 200
    html = home.get_data(as_text=True)
    for view in model_views(app):
        visible = f'href="{view.url}/"' in html
        may = role in view.permissions.get("view", ())
        assert visible == (may and in_menu({role}, view.endpoint)), (role, view.endpoint)
        if not visible:
            assert client.get(f"{view.url}/").status_code == (200 if may else 403), (role, view.endpoint)


@pytest.mark.parametrize(("role", "sees", "hidden"), [
    ("admin", ["staff", "role_change", "security_event"], ["resident", "unit", "estate", "occupancy"]),
    ("engineering", ["unit"], ["resident", "occupancy", "vip", "staff"]),
    ("cs_clerk", ["resident", "unit", "occupancy", "vip"], ["staff", "security_event"]),
    ("finance", ["resident", "occupancy"], ["vip", "staff", "resident_change"]),
    ("security", ["resident", "unit"], ["vip", "staff"]),
    ("management_dept", ["unit"], ["resident", "occupancy", "staff"]),
])
def test_acc_4_demo_roles_menus(app, login_as, role, sees, hidden):
    """The demo roles: admin runs accounts but reads no residents; engineering sees units only."""
    client = login_as(role)
    html = client.get("/admin/").get_data(as_text=True)
    for endpoint in sees:
        assert f'href="/admin/{endpoint}/"' in html, (role, endpoint)
        assert client.get(f"/admin/{endpoint}/").status_code == 200, (role, endpoint)
    for endpoint in hidden:
        assert f'href="/admin/{endpoint}/"' not in html, (role, endpoint)
        assert client.get(f"/admin/{endpoint}/").status_code == 403, (role, endpoint)
        assert client.get(f"/admin/{endpoint}/details/?id=1").status_code == 403, (role, endpoint)


# --- IDOR: get_one goes through get_query ------------------------------------------------------
def test_acc_4_get_one_is_limited_to_get_query(app, staff_ids, db_session, login_as, monkeypatch):
    """A record the list would not show cannot be opened, edited or deleted by guessing its id."""
    ids = seed(staff_ids)
    view = find_view(app, "unit")
    monkeypatch.setattr(view, "permissions", {**view.permissions, "delete": FRONT_DESK})
    monkeypatch.setattr(view, "scope_query", lambda query: query.filter(sa.false()))
    client = login_as("cs_supervisor")
    token = csrf_token(client)
    target = ids["spare_unit"]
    before = snapshot()

    assert "A-12-1204" not in client.get("/admin/unit/").get_data(as_text=True)
    details = client.get(f"/admin/unit/details/?id={target}")
    assert details.status_code == 302 and "A-12-1204" not in details.get_data(as_text=True)
    assert client.get(f"/admin/unit/edit/?id={target}").status_code == 302
    edit = client.post(f"/admin/unit/edit/?id={target}", data={
        "csrf_token": token, "version": "1", "building": ids["building"], "code": "A-12-1204",
        "floor": "12", "area": "1.00", "use": "office"})
    assert edit.status_code == 302
    assert client.post("/admin/unit/delete/", data={"csrf_token": token, "id": target}).status_code == 302
    assert client.post("/admin/unit/action/", data={
        "csrf_token": token, "action": "delete", "rowid": target}).status_code == 302
    reauthenticate(client)
    export = client.get("/admin/unit/export/csv/").get_data(as_text=True)
    assert "A-12-1204" not in export and len(export.strip().splitlines()) == 1
    assert snapshot() == before

    # The same requests succeed once the row is in scope: the refusal came from the scope.
    monkeypatch.setattr(view, "scope_query", lambda query: query)
    assert client.get(f"/admin/unit/details/?id={target}").status_code == 200
    assert client.post("/admin/unit/delete/", data={"csrf_token": token, "id": target}).status_code == 302
    assert fetch(Unit, target) is None


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_acc_4_missing_or_junk_id_is_not_a_500(app, seeded, endpoint):
    """Details, edit and delete of an id that does not exist redirect with a message, never crash.

    Each request is made by the role with the most rights on the screen, so the id lookup is reached
    wherever some role may reach it (403 is then only for endpoints nobody may use).
    """
    view = find_view(app, endpoint)
    perms = view.permissions
    role = max(ROLE_USERS, key=lambda r: sum(r in roles for roles in perms.values()) * (r in perms["view"]))
    client = signed_in(app, role)
    token = csrf_token(client)
    before = snapshot()
    for bad_id in (str(MISSING_ID), "abc", "1 OR 1=1", "-1", "", "1e3", "9" * 30):
        where = (role, bad_id)
        expect_details = 302
        expect_edit = 302 if allowed(view, role, "edit") else 403
        expect_delete = 302 if allowed(view, role, "delete") else 403
        assert client.get(f"{view.url}/details/", query_string={"id": bad_id}).status_code == expect_details, where
        assert client.get(f"{view.url}/edit/", query_string={"id": bad_id}).status_code == expect_edit, where
        response = client.post(f"{view.url}/edit/", query_string={"id": bad_id},
                               data={"csrf_token": token, "version": "1"})
        assert response.status_code == expect_edit, where
        response = client.post(f"{view.url}/delete/", data={"csrf_token": token, "id": bad_id})
        assert response.status_code == expect_delete, where
        for action in view._actions_data:
            response = client.post(f"{view.url}/action/", data={
                "csrf_token": token, "action": action, "rowid": bad_id})
            allowed_action = allowed(view, role, permission_of(f"action:{action}"))
            assert response.status_code == (302 if allowed_action else 403), (*where, action)
    assert snapshot() == before


# --- ajax/update ---------------------------------------------------------------------------------
@pytest.mark.parametrize("endpoint", ["resident", "unit", "occupancy", "staff"])
def test_acc_4_ajax_update_is_refused_for_everyone(app, staff_ids, db_session, login_as, endpoint):
    """Inline editing would bypass the workflow layer: refused for every role, nothing written."""
    ids = seed(staff_ids)
    before = snapshot()
    for role in ROLE_USERS:
        client = login_as(role)
        response = client.post(f"/admin/{endpoint}/ajax/update/", data={
            "csrf_token": csrf_token(client), "list_form_pk": ids[endpoint], "name": "改掉",
            "code": "A-1-101", "full_name": "改掉", "kind": "tenant"})
        assert response.status_code in (403, 404), (role, response.status)
    assert snapshot() == before


# --- ACC-6: national ID masked in lists and exports -----------------------------------------
@pytest.mark.parametrize("role", ["manager", "cs_supervisor"])
def test_acc_6_export_masks_national_id(app, staff_ids, db_session, login_as, role):
    """The resident CSV holds only the export columns, and the ID number only masked."""
    seed(staff_ids)
    full = valid_id(1)
    client = login_as(role)
    reauthenticate(client)
    response = client.get("/admin/resident/export/csv/")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    text = response.get_data(as_text=True)
    assert full not in text and valid_id(2) not in text
    assert not re.search(r"\d{17}[\dX]", text)
    rows = list(csv.reader(io.StringIO(text)))
    view = find_view(app, "resident")
    assert len(rows[0]) == len(view.column_export_list)
    id_col = view.column_export_list.index("id_number")
    masked = {row[id_col] for row in rows[1:]}
    assert f"{full[:3]}{'*' * 11}{full[-4:]}" in masked
    # No column outside the export list: the emergency contact stays out.
    assert "13800138000" in text and "13600136000" not in text and "王母" not in text


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_acc_6_export_uses_only_column_export_list(app, seeded, endpoint):
    """Every screen's CSV has exactly its declared export columns, never Flask-Admin's fallback."""
    view = find_view(app, endpoint)
    role = next((r for r in ROLE_USERS if allowed(view, r, "export")), None)
    if role is None:
        pytest.skip(f"nobody may export {endpoint}")
    assert [name for name, _label in view._export_columns] == list(view.column_export_list)
    client = signed_in(app, role)
    reauthenticate(client)
    response = client.get(f"{view.url}/export/csv/")
    assert response.status_code == 200
    header = next(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert len(header) == len(view.column_export_list)


def test_acc_6_lists_and_forms_mask_national_id(app, staff_ids, db_session, login_as):
    """Lists mask the ID for everyone; the full number only on the details page of ACC-6 roles."""
    ids = seed(staff_ids)
    full = valid_id(1)
    for role in ("manager", "cs_supervisor", "cs_clerk", "security", "finance"):
        client = login_as(role)
        assert full not in client.get("/admin/resident/").get_data(as_text=True), role
        details = client.get(f"/admin/resident/details/?id={ids['resident']}").get_data(as_text=True)
        assert (full in details) == (role in find_view(app, "resident").full_id_roles), role
        if role in FRONT_DESK:
            edit = client.get(f"/admin/resident/edit/?id={ids['resident']}").get_data(as_text=True)
            assert full not in edit, role


# --- ACC-7: confidential views are logged ------------------------------------------------------
def confidential_views() -> list[tuple[int | None, str | None]]:
    with db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            sa.select(SecurityEvent.staff_id, SecurityEvent.detail).where(SecurityEvent.kind == "confidential_view"))]


def test_acc_7_resident_details_writes_confidential_view(app, staff_ids, db_session, login_as):
    """Opening a resident's details leaves a 'confidential_view' row naming who and which resident."""
    ids = seed(staff_ids)
    assert confidential_views() == []
    response = login_as("cs_clerk").get(f"/admin/resident/details/?id={ids['resident']}")
    assert response.status_code == 200
    assert confidential_views() == [(staff_ids["cs_clerk"], f"resident {ids['resident']}")]


def test_acc_7_refused_or_missing_resident_is_not_logged_as_viewed(app, staff_ids, db_session, login_as):
    """Nothing was shown, so nothing is logged as viewed: a refused role and a missing id."""
    ids = seed(staff_ids)
    assert login_as("engineering").get(f"/admin/resident/details/?id={ids['resident']}").status_code == 403
    assert login_as("cs_clerk").get(f"/admin/resident/details/?id={MISSING_ID}").status_code == 302
    assert app.test_client().get(f"/admin/resident/details/?id={ids['resident']}").status_code == 302
    assert confidential_views() == []


# --- CSRF -------------------------------------------------------------------------------------
def _csrf_cases(ids: dict[str, int]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    return {
        "create": ("cs_clerk", "/admin/unit/new/", CREATE["unit"](ids)),
        "edit": ("cs_clerk", f"/admin/unit/edit/?id={ids['unit']}", {**EDIT["unit"](ids), "version": "1"}),
        "delete": ("cs_supervisor", "/admin/unit/delete/", {"id": ids["spare_unit"]}),
        "action": ("admin", "/admin/staff/action/", {"action": "issue_reset", "rowid": ids["staff"]}),
        "logout": ("cs_clerk", "/logout", {}),
        "language": ("cs_clerk", "/lang/en", {"next": "/admin/"}),
        "custom_post": ("cs_supervisor", "/admin/archive_spot_check/draw/", {}),  # a view's own endpoint
    }


@pytest.mark.parametrize("token", ["missing", "forged"])
@pytest.mark.parametrize("case", ["create", "edit", "delete", "action", "logout", "language", "custom_post"])
def test_acc_4_post_without_csrf_token_is_refused(app, staff_ids, db_session, login_as, monkeypatch,
                                                  case, token):
    """Every state-changing POST needs the session's CSRF token: 400, nothing written, still signed in."""
    ids = seed(staff_ids)
    monkeypatch.setattr(find_view(app, "unit"), "permissions",
                        {**find_view(app, "unit").permissions, "delete": FRONT_DESK})
    role, url, data = _csrf_cases(ids)[case]
    client = login_as(role)
    if token == "forged":
        data = {**data, "csrf_token": csrf_token(login_as(role))}  # a valid token of another session
    before = snapshot()
    events = count(SecurityEvent)
    response = client.post(url, data=data)
    assert response.status_code == 400, response.status
    assert snapshot() == before
    assert count(SecurityEvent) == events  # no logout, no reset link logged
    assert fetch(Staff, staff_ids[role]).locale == "zh_Hans_CN"
    assert client.get("/admin/").status_code == 200  # still signed in


def test_acc_4_csrf_control_with_token_succeeds(app, staff_ids, db_session, login_as):
    """The same requests with the right token go through, so the 400s above are the token's doing."""
    ids = seed(staff_ids)
    client = login_as("cs_clerk")
    token = csrf_token(client)
    assert client.post("/admin/unit/new/", data={"csrf_token": token, **CREATE["unit"](ids)}).status_code == 302
    assert client.post("/lang/en", data={"csrf_token": token, "next": "/admin/"}).status_code == 302
    assert fetch(Staff, staff_ids["cs_clerk"]).locale == "en"
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/admin/").status_code == 302
