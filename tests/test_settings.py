"""The low-code settings screen: admins change who may do a step and how long a limit is.

Role settings are permissions: they need the password re-entered (ACC-5), are logged (ACC-7) and
audited; bad values are refused with a message and write nothing; only admins reach the screen.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask, g
from flask.testing import FlaskClient

from models import AuditEntry, SecurityEvent, Staff, db
from models.workflow import WorkflowSetting
from tests.conftest import PASSWORD, ROLE_USERS, csrf_token
from tests.helpers import make_key_custody
from workflow import engine, settings

CHECK_OUT = "key_custody.check_out.roles"
LOSS_STEP = "key_custody.report_lost.step1.roles"
HOURS = "workflow.approval_reminder_hours"


def post_setting(client: FlaskClient, key: str, value: Any = None, action: str = "change",
                 **kw: Any):  # type: ignore[no-untyped-def]
    data = {"csrf_token": csrf_token(client), "key": key, "action": action}
    if value is not None:
        data["value"] = value
    return client.post("/admin/settings/change", data=data, **kw)


def reauth(client: FlaskClient) -> None:
    response = client.post("/reauth?next=/admin/settings/", data={"csrf_token": csrf_token(client),
                                                                  "password": PASSWORD})
    assert response.status_code == 302 and response.headers["Location"].endswith("/admin/settings/")


def stored(app: Flask) -> dict[str, Any]:
    with app.app_context():
        return {k: json.loads(v) for k, v in db.session.execute(
            sa.select(WorkflowSetting.key, WorkflowSetting.value))}


def setting_audits(app: Flask) -> list[tuple[str, str | None, int | None]]:
    with app.app_context():
        return [tuple(r) for r in db.session.execute(
            sa.select(AuditEntry.action, AuditEntry.comment, AuditEntry.actor_id)
            .where(AuditEntry.action == "setting").order_by(AuditEntry.seq))]


def english_admin(app: Flask, staff_ids: dict[str, int], login_as) -> FlaskClient:  # type: ignore[no-untyped-def]
    with app.app_context():
        db.session.get(Staff, staff_ids["admin"]).locale = "en"
        db.session.commit()
    return login_as("admin")


# --- the screen -----------------------------------------------------------------------------------
def test_wf_settings_lists_every_declared_setting_grouped(app, staff_ids, login_as):
    html = login_as("admin").get("/admin/settings/").get_data(as_text=True)
    with app.test_request_context():  # the default locale, as the admin sees the screen
        for key, spec in settings.SPECS.items():
            row = html[html.index(f'id="setting-{key}"'):]
            row = row[:row.index("</tr>")]
            assert f"<code class=\"small\">{key}</code>" in row, key
            assert spec.shown(settings.value(key)) in row and f'name="key" value="{key}"' in row, key
    with app.test_request_context():  # groups as the admin reads them (two may share a heading)
        group = {k: str(spec.group) for k, spec in settings.SPECS.items()}
    shown = sorted(settings.SPECS, key=lambda k: html.index(f'id="setting-{k}"'))
    runs = [group[k] for i, k in enumerate(shown) if i == 0 or group[k] != group[shown[i - 1]]]
    assert len(runs) == len(set(runs))  # grouped: one group's settings stand together


def test_acc_5_role_setting_needs_the_password_again(app, staff_ids, login_as):
    admin = login_as("admin")
    response = post_setting(admin, CHECK_OUT, ["cs_supervisor"])
    assert response.status_code == 302
    assert "/reauth?next=" in response.headers["Location"]
    assert stored(app) == {} and setting_audits(app) == []

    reauth(admin)
    assert post_setting(admin, CHECK_OUT, ["cs_supervisor"]).status_code == 302
    assert stored(app) == {CHECK_OUT: ["cs_supervisor"]}


def test_wf_settings_check_out_limited_to_supervisor_is_enforced(app, staff_ids, login_as):
    """ACC-4: permissions follow roles, and the roles of a step are a setting the engine obeys."""
    admin = login_as("admin")
    reauth(admin)
    page = post_setting(admin, CHECK_OUT, ["cs_supervisor"], follow_redirects=True)
    assert page.status_code == 200
    with app.test_request_context():
        keys = make_key_custody()
        db.session.commit()
        clerk = db.session.get(Staff, staff_ids["cs_clerk"])
        supervisor = db.session.get(Staff, staff_ids["cs_supervisor"])
        values = {"current_holder": "王师傅", "current_purpose": "维修"}
        with pytest.raises(engine.NotAllowed):
            engine.fire(keys, "check_out", clerk, values=values)
        assert "check_out" not in [t.name for t in engine.available(keys, clerk)]
        assert engine.fire(keys, "check_out", supervisor, values=values) == "done"
        assert keys.state == "out"

    [(action, comment, actor)] = setting_audits(app)
    assert (action, comment, actor) == ("setting", CHECK_OUT, staff_ids["admin"])
    with app.app_context():  # ACC-7: a permission change is in the security log
        detail = db.session.scalar(sa.select(SecurityEvent.detail).where(SecurityEvent.kind == "setting_changed"))
    assert detail and CHECK_OUT in detail and "cs_supervisor" in detail


def test_wf_settings_step_roles_move_the_sign_off(app, staff_ids, login_as):
    admin = login_as("admin")
    reauth(admin)
    assert post_setting(admin, LOSS_STEP, ["manager"]).status_code == 302
    with app.test_request_context():
        keys = make_key_custody()
        db.session.commit()
        engine.fire(keys, "report_lost", db.session.get(Staff, staff_ids["cs_clerk"]), "不见了")
        assert not engine.can_decide(keys, db.session.get(Staff, staff_ids["cs_supervisor"]))
        assert engine.decide(keys, db.session.get(Staff, staff_ids["manager"]), True, "确认") == "approved"


def test_wf_settings_duration_changes_without_reauth_and_resets(app, staff_ids, login_as):
    admin = login_as("admin")
    assert post_setting(admin, HOURS, "48").status_code == 302
    assert stored(app) == {HOURS: 48}
    with app.test_request_context():
        assert settings.value(HOURS) == 48
    html = admin.get("/admin/settings/").get_data(as_text=True)
    assert 'name="action" value="reset"' in html  # an override can go back to the default

    assert post_setting(admin, HOURS, action="reset").status_code == 302
    assert stored(app) == {}
    with app.test_request_context():
        assert settings.value(HOURS) == settings.SPECS[HOURS].default
    assert [(a, c) for a, c, _actor in setting_audits(app)] == [("setting", HOURS), ("setting", HOURS)]


def test_acc_5_resetting_a_role_setting_needs_the_password_again(app, staff_ids, login_as):
    with app.app_context():
        settings.change(CHECK_OUT, ["manager"], None)
        db.session.commit()
    admin = login_as("admin")
    response = post_setting(admin, CHECK_OUT, action="reset")
    assert response.status_code == 302 and "/reauth?next=" in response.headers["Location"]
    assert stored(app) == {CHECK_OUT: ["manager"]}
    reauth(admin)
    assert post_setting(admin, CHECK_OUT, action="reset").status_code == 302
    assert stored(app) == {}


@pytest.mark.parametrize(("key", "value", "message"), [
    (CHECK_OUT, ["cs_supervisor", "janitor"], "Unknown role: janitor"),
    (CHECK_OUT, None, "At least one role is required."),
    (CHECK_OUT, [""], "At least one role is required."),
    (HOURS, "abc", "Enter a whole number."),
    (HOURS, "", "Enter a whole number."),
    (HOURS, "0", "Enter a number from 1 to 720."),
    (HOURS, "721", "Enter a number from 1 to 720."),
    (HOURS, "99999999999999999999", "Enter a number from 1 to 720."),
])
def test_wf_settings_bad_value_is_refused_and_writes_nothing(app, staff_ids, login_as, key, value, message):
    admin = english_admin(app, staff_ids, login_as)
    reauth(admin)
    page = post_setting(admin, key, value, follow_redirects=True)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert message in html and "alert-danger" in html  # the declaration's message, in the user's language
    assert stored(app) == {} and setting_audits(app) == []
    with app.test_request_context():
        assert settings.value(key) == settings.SPECS[key].default


def test_wf_settings_unknown_key_is_404(app, staff_ids, login_as):
    admin = login_as("admin")
    reauth(admin)
    assert post_setting(admin, "no.such.setting", "1").status_code == 404
    assert post_setting(admin, HOURS, "1", action="drop").status_code == 404
    assert stored(app) == {}


@pytest.mark.parametrize("role", [r for r in ROLE_USERS if r != "admin"])
def test_acc_4_settings_are_admin_only(app, staff_ids, login_as, role):
    client = login_as(role)
    assert client.get("/admin/settings/").status_code == 403
    assert post_setting(client, HOURS, "2").status_code == 403
    assert post_setting(client, CHECK_OUT, ["cs_clerk"]).status_code == 403
    assert 'href="/admin/settings/"' not in client.get("/admin/").get_data(as_text=True)
    assert stored(app) == {} and setting_audits(app) == []


def test_acc_4_settings_anonymous_goes_to_login(app, staff_ids):
    client = app.test_client()
    response = client.get("/admin/settings/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    response = post_setting(client, HOURS, "2")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert stored(app) == {}


def test_acc_4_settings_post_without_csrf_is_refused(app, staff_ids, login_as):
    admin = login_as("admin")
    assert admin.post("/admin/settings/change", data={"key": HOURS, "value": "2"}).status_code == 400
    assert stored(app) == {}


def test_wf_settings_cached_value_is_per_request(app, staff_ids):
    """A value read earlier in a request is not served after a change in the same request."""
    with app.test_request_context():
        assert settings.value(HOURS) == 24
        settings.change(HOURS, 6, None)
        db.session.commit()
        assert settings.value(HOURS) == 6
        g.pop("pm_settings", None)
        assert settings.value(HOURS) == 6
