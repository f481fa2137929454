"""VIS-3 in Chromium: the resident signs on the canvas pad of a visit (fixtures: tests/browser_support.py)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from models import db
from models.attachment import Attachment
from models.visits import Visit
from tests.browser_support import log_in, shot
from tests.helpers import make_visit

pytestmark = pytest.mark.browser


def test_vis_3_browser_resident_signs_on_the_pad_then_the_visit_is_recorded(app, page, staff_ids) -> None:
    """VIS-3 in Chromium: the resident draws on the canvas, the PNG is kept, the visit records."""
    with app.app_context():
        visit_id = make_visit(method="on_site").id
        db.session.commit()
    page.goto(f"/admin/visit/details/?id={visit_id}")
    log_in(page, "cs_clerk")
    page.on("dialog", lambda dialog: dialog.accept())
    pad = page.locator("#signature-pad")
    expect(pad).to_be_visible()
    page.wait_for_load_state()
    pad.scroll_into_view_if_needed()  # the mouse draws where the pad is on screen
    box = pad.bounding_box()
    page.mouse.move(box["x"] + 20, box["y"] + 80)
    page.mouse.down()
    for step in range(1, 12):
        page.mouse.move(box["x"] + 20 + step * 25, box["y"] + 80 + (step % 3 - 1) * 30)
    page.mouse.up()
    shot(page, "visit-signature-pad")
    page.locator("#signature-form button[type=submit]").click()
    expect(page.locator("#attachments")).to_be_visible()
    page.locator('form.wf-transition[data-transition="record"] button[type=submit]').click()
    expect(page.locator("#signature-pad")).to_have_count(0)
    with app.app_context():
        row = db.session.scalar(sa.select(Attachment).where(Attachment.record_id == visit_id))
        assert row.content_type == "image/png" and row.size > 100
        assert db.session.get(Visit, visit_id).state == "recorded"
