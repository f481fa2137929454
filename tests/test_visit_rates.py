"""VIS-5 rates for the dashboard (the statistics screen shows them against the targets) and the
VIS-2 monthly list of major repairs still waiting for an on-site visit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from models import db
from models.attachment import store
from models.base import utcnow
from models.visit_stats import complaint_follow_up_rate, major_repairs_without_on_site_visit
from tests.helpers import make_repair_order, make_visit
from tests.test_visits import handled_complaint, png, staff
from workflow import engine


def test_vis_2_major_repairs_of_the_month_wait_for_an_on_site_visit(db_session, staff_ids) -> None:
    now, day = utcnow(), timedelta(days=1)
    major, ordinary = make_repair_order(emergency=True), make_repair_order()
    db.session.execute(sa.update(major.__table__).where(major.__table__.c.id.in_([major.id, ordinary.id]))
                       .values(completed_at=now - day))
    db.session.commit()
    assert major_repairs_without_on_site_visit(now - 30 * day, now + day) == [major.id]
    manager = staff(staff_ids, "manager")
    visit = make_visit(kind="repair", repair_order=major, method="on_site")
    db.session.commit()
    store(visit, "signature", png(), "sig.png", manager)
    db.session.commit()
    engine.fire(visit, "record", manager)
    assert major_repairs_without_on_site_visit(now - 30 * day, now + day) == []


def test_vis_5_complaint_follow_up_rate_counts_handled_complaints_with_a_completed_visit(
        db_session, staff_ids) -> None:
    complaint = handled_complaint(staff_ids)
    engineer = staff(staff_ids, "engineering")
    day = timedelta(days=1)
    assert (complaint_follow_up_rate(utcnow() - day, utcnow() + day).done,
            complaint_follow_up_rate(utcnow() - day, utcnow() + day).total) == (0, 1)
    visit = make_visit(kind="complaint", complaint=complaint, visitor=engineer, visited_at=utcnow(),
                       method="on_site")
    db.session.commit()
    store(visit, "signature", png(), "sig.png", engineer)
    db.session.commit()
    engine.fire(visit, "record", engineer)
    rate = complaint_follow_up_rate(utcnow() - day, utcnow() + day)
    assert (rate.done, rate.total, rate.value, rate.met) == (1, 1, 1.0, True)
    assert complaint_follow_up_rate(datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 2, 1, tzinfo=UTC)).value is None

