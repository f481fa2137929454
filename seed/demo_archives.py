"""Demo resident archives (业户档案, REGULATIONS §3): one archive per demo unit (each unit brought its own,
ARC-13), confirmed in the census, with the move-in documents ticked — each tick backed by a (tiny
placeholder) scan, as ARC-2 requires, and dated (ARC-12)."""

from __future__ import annotations

from datetime import date, timedelta

import sqlalchemy as sa

from models import Staff, Unit, db
from models.archives import ArchiveDocument, archive_for_unit, file_document
from workflow import engine

PLACEHOLDER_PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
TICKED = ("prelim_agreement", "move_in_notice", "owner_id_copy", "covenant", "fire_letter", "key_receipt")


def seed_archives() -> None:
    """Idempotent: nothing happens once any document is filed (the archives came with the units)."""
    if db.session.scalar(sa.select(ArchiveDocument.id).limit(1)) is not None:
        return
    clerk = db.session.scalar(sa.select(Staff).where(Staff.username == "clerk"))
    for n, unit_id in enumerate(db.session.scalars(sa.select(Unit.id).order_by(Unit.id))):
        archive = archive_for_unit(unit_id)
        for doc in TICKED[: 2 + n % (len(TICKED) - 1)] if n < 40 else ():  # scans for the first 40 only
            file_document(archive, doc, PLACEHOLDER_PDF, f"{doc}.pdf", clerk,
                          date(2024, 1, 1) + timedelta(days=30 * TICKED.index(doc) + n))  # ARC-12: own dates
        if clerk is not None and n % 3:
            engine.fire(archive, "confirm_data", clerk)  # every third left unconfirmed: stale (ARC-6)
    db.session.commit()
