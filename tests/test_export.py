"""ACC-5/ACC-6/ACC-7: exporting personal data needs the password again, is masked and logged."""

from __future__ import annotations

import sqlalchemy as sa

from models import SecurityEvent, db
from tests.conftest import PASSWORD, csrf_token
from tests.helpers import make_occupancy, make_resident, make_unit, valid_id


def test_acc_5_resident_export_asks_for_password_then_masks_id(login_as, db_session) -> None:
    number = valid_id(7)
    make_occupancy(make_unit(), make_resident(id_number=number))
    db.session.commit()
    client = login_as("cs_supervisor")
    first = client.get("/admin/resident/export/csv/")
    assert first.status_code == 302 and "/reauth" in first.headers["Location"]
    wrong = client.post(first.headers["Location"],
                        data={"csrf_token": csrf_token(client), "password": "nope-nope-nope"})
    assert wrong.status_code == 200
    ok = client.post(first.headers["Location"], data={"csrf_token": csrf_token(client), "password": PASSWORD})
    assert ok.status_code == 302 and ok.headers["Location"].endswith("/admin/resident/export/csv/")
    csv = client.get("/admin/resident/export/csv/")
    body = csv.get_data(as_text=True)
    assert csv.status_code == 200 and "张三" in body
    assert number not in body and number[:3] in body and number[-4:] in body  # ACC-6 masked
    kinds = db.session.scalars(sa.select(SecurityEvent.kind)).all()
    assert "reauth_failed" in kinds and "reauth" in kinds and "export" in kinds  # ACC-7


def test_acc_5_reauth_redirect_stays_on_site(login_as) -> None:
    client = login_as("cs_supervisor")
    response = client.post("/reauth?next=https://evil.example/", data={
        "csrf_token": csrf_token(client), "password": PASSWORD})
    assert response.status_code == 302 and "evil.example" not in response.headers["Location"]


def test_acc_6_unit_export_uses_only_export_columns(login_as, db_session) -> None:
    make_unit()
    db.session.commit()
    body = login_as("cs_supervisor").get("/admin/unit/export/csv/").get_data(as_text=True)
    header = body.splitlines()[0]
    assert header.count(",") == 4 and "version" not in body.lower()


def test_acc_6_every_workflow_export_names_the_status_not_its_key(app, login_as, db_session) -> None:
    """Exports say 已迁出/放行, never the stored key; one HTTP export, then every screen's formatter."""
    from datetime import timedelta
    from decimal import Decimal

    from flask_babel import force_locale

    from models.base import utcnow
    from models.moving import MoveDamage
    from tests.test_permissions import model_views
    from views.workflow import WorkflowModelView
    from workflow import engine

    unit = make_unit()
    db.session.add(MoveDamage(unit=unit, mover="搬家公司", description="电梯划伤", amount=Decimal("100.00"),
                              restore_by=utcnow() + timedelta(days=3)))
    db.session.commit()
    supervisor = login_as("cs_supervisor")
    supervisor.post("/reauth", data={"csrf_token": csrf_token(supervisor), "password": PASSWORD})  # ACC-5: the mover
    body = supervisor.get("/admin/move_damage/export/csv/").get_data(as_text=True)
    label = str(engine.workflow_of(MoveDamage).state_label("charged"))
    assert label in body and ",charged" not in body
    checked = 0
    with app.test_request_context(), force_locale("zh_Hans_CN"):
        for view in model_views(app):
            if isinstance(view, WorkflowModelView) and "state" in (view.column_export_list or []):
                wf = engine.workflow_of(view.model)
                record = view.model()  # transient: never added to the session
                record.state = wf.initial
                assert view.column_formatters_export["state"](view, None, record, "state") == \
                    wf.state_label(wf.initial), view.endpoint
                checked += 1
    assert checked >= 15


def test_acc_6_coded_columns_show_their_labels_in_lists_and_exports(app) -> None:
    """A column chosen from a list (form_choices) is shown and exported by its label (管理费), not its key."""
    from tests.test_permissions import model_views

    unlabelled = []
    for view in model_views(app):
        exported = set(view.column_export_list or []) | set(view.column_list or [])
        labelled = set(view.column_choices or {}) | set(view.column_formatters_export or {})
        unlabelled += [f"{view.endpoint}.{c}" for c in (view.form_choices or {}) if c in exported - labelled]
    assert unlabelled == []
