"""The renovation's printed documents as PDF (REGULATIONS §7, issue 6 part 6): the permit
(装修许可证 / 批准书, REN-3), the outstanding-defects notice to owner and tenant (REN-2), the
rectification notice with its deadline (整改通知书, REN-7) and the acceptance notice (验收合格通知书,
REN-7).

A document is printed from what the workflow wrote (the permit number, the ``RenovationNotice`` rows),
so it exists only once its step has been taken: asking earlier is a 404 with a reason, never an empty
form. Printing shows the renovation as its details page does, so it is allowed exactly when the
renovation screen would show it (its permissions and ``get_one`` scope) and it is audited ("print").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from flask import abort, redirect, render_template, url_for
from flask_admin import Admin, expose
from flask_babel import lazy_gettext as _l

from models.renovation import Renovation, RenovationNotice
from views.base import SecureView
from views.printing import admin_view, printed
from views.roles import BUSINESS

RENOVATION_ENDPOINT = "renovation"  # the registered renovation screen decides who may print
ADDRESSEES = {"owner": _l("Owner"), "tenant": _l("Tenant"), "applicant": _l("Applicant")}

# The rules printed on the permit (装修须知): what the contractor signs to keep (REN-3..REN-7).
RULES = (
    _l("Work only within the permitted period; noisy work only on working days from 8:00 to 12:00 and "
       "from 14:00 to 18:00."),
    _l("Do not alter load-bearing walls, columns, beams, floor slabs, the building's facade or shared pipes."),
    _l("Hot work (welding, cutting) needs a separate hot-work permit approved by engineering and security."),
    _l("Temporary power only as priced by engineering and paid to finance; never tap shared circuits."),
    _l("Bag the debris and leave it only at the place the service centre names; never in corridors or "
       "stairwells."),
    _l("Workers carry their worker pass at all times and return it when the works end."),
    _l("Keep fire extinguishers on site; the smoke detectors and vents stay sealed until acceptance."),
    _l("Patrols by engineering, the management department and security may enter the site at any time; "
       "breaches are met with a verbal warning, a written violation notice, a final warning, then a power "
       "cut or clearing the site."),
    _l("Extending the works needs an extension application before the permitted end."),
    _l("Apply for acceptance within 7 working days after finishing; the deposit is refunded after "
       "acceptance."),
)


def _yuan(amount: Decimal | None) -> str:
    return f"{amount:,.2f}" if amount is not None else ""


def _name(staff: Any) -> str:
    return staff.full_name if staff is not None else ""


def _latest(ren: Renovation, kind: str) -> list[RenovationNotice]:
    """The notices of the last time this step was taken (a defects return writes one per addressee)."""
    notices = [n for n in ren.notices if n.kind == kind]
    if not notices:
        return []
    last = max(n.issued_at for n in notices)
    return [n for n in notices if n.issued_at == last]


def _addressee(text: str) -> dict[str, str]:
    """``"王五 (tenant)"`` as the effect writes it → the name and the translated role."""
    for key, role in ADDRESSEES.items():
        if text.endswith(f" ({key})"):
            return {"name": text[: -len(key) - 3], "role": str(role)}
    return {"name": text, "role": str(_l("To"))}


def _head(ren: Renovation, number: str) -> dict[str, Any]:
    """What every document prints at its top: the unit, applicant, contractor and works period."""
    applicant = ren.applicant
    return {
        "number": number, "application_number": ren.number, "unit": str(ren.unit) if ren.unit else "",
        "applicant": applicant.name if applicant else "",
        "applicant_phone": (applicant.phone or "") if applicant else "",
        "contractor": ren.contractor or "", "contractor_person": ren.contractor_contact or "",
        "contractor_phone": ren.contractor_phone or "", "works_start": ren.planned_start,
        "works_end": ren.works_until or ren.planned_end,
    }


def permit(ren: Renovation) -> dict[str, Any] | None:
    """REN-3: issued with the passes once every fee and deposit is paid."""
    if not ren.permit_no:
        return None
    issued = _latest(ren, "permit")
    paid = [c for c in ren.charges if c.paid_at is not None]
    return {**_head(ren, ren.permit_no), "issued_at": ren.permitted_at,
            "issued_by": _name(issued[0].issued_by) if issued else "", "description": ren.scope or "",
            "extended_until": ren.works_until if ren.extensions else None,
            "approved_by": _name(ren.approved_by), "approved_at": ren.approved_at,
            "neighbours": ren.neighbours_notified or next((n.addressed_to for n in _latest(ren, "neighbours")), ""),
            "fees": [{"label": c.kind_label, "amount": _yuan(c.amount), "paid_at": c.paid_at,
                      "receipt": c.receipt_no or ""} for c in paid],
            "fees_total": _yuan(sum((c.amount for c in paid), Decimal("0.00"))),
            "passes": [{"number": p.number, "issued_at": p.issued_at, "deposit": _yuan(p.deposit)}
                       for p in ren.passes]}


def defects(ren: Renovation) -> dict[str, Any] | None:
    """REN-2: the pre-inspection's outstanding defects, one copy per addressee (owner and tenant)."""
    notices = _latest(ren, "defects")
    if not notices:
        return None
    first = notices[0]
    rounds = len({n.issued_at for n in ren.notices if n.kind == "defects"})  # the n-th return
    return {**_head(ren, f"{ren.number}-YL{rounds}"),
            "inspected_at": first.issued_at, "inspector": _name(first.issued_by), "defects": first.text,
            "recipients": [_addressee(n.addressed_to) for n in notices]}


def rectification(ren: Renovation) -> dict[str, Any] | None:
    """REN-7: the failed completion inspection's items and the deadline for re-inspection."""
    notices = _latest(ren, "rectification")
    if not notices:
        return None
    notice = notices[0]
    count = len([n for n in ren.notices if n.kind == "rectification"])
    return {**_head(ren, f"{ren.number}-ZG{count}"), "inspected_at": notice.issued_at,
            "inspector": _name(notice.issued_by), "findings": notice.text, "deadline": notice.due_on}


def acceptance(ren: Renovation) -> dict[str, Any] | None:
    """REN-7: accepted; the deposits to refund within 2 working days (finance tracks the clock)."""
    notices = _latest(ren, "acceptance")
    if not notices or ren.accepted_at is None:
        return None
    notice = notices[0]
    return {**_head(ren, f"{ren.number}-YS"), "inspected_at": notice.issued_at,
            "inspector": _name(notice.issued_by), "findings": notice.text, "accepted_at": ren.accepted_at,
            "refund_due": refund_due(ren),
            "refunds": [{"label": c.kind_label, "amount": _yuan(c.amount)}
                        for c in ren.charges if c.refundable and c.paid_at is not None],
            "documents": acceptance_documents(ren)}


def acceptance_documents(ren: Renovation) -> list[dict[str, Any]]:
    """REN-10: what the acceptance application brought, one line per item with its scans."""
    from models.attachment import KINDS, attachments_of
    from models.renovation_rules import ACCEPTANCE_DOCUMENTS

    rows = []
    for kind in ACCEPTANCE_DOCUMENTS:
        scans = attachments_of("renovation", ren.id, kind)
        rows.append({"label": str(KINDS[kind].label),
                     "sets": ren.asbuilt_sets if kind == "asbuilt" else None,
                     "scans": [f"{a.original_filename}" for a in scans]})
    return rows


def refund_due(ren: Renovation) -> datetime | None:
    from workflow.calendar import add

    if ren.accepted_at is None:
        return None
    site = ren.unit.building.estate_id if ren.unit is not None else None
    return add(ren.accepted_at, 2, "working_days", site)


@dataclass(frozen=True)
class Document:
    title: str  # the form's own name, printed as the firm files it
    template: str
    build: Callable[[Renovation], dict[str, Any] | None]
    missing: Any  # why it cannot be printed yet
    kind: str  # the notice kind the workflow writes when the step is taken

    def exists(self, ren: Renovation) -> bool:
        """Cheap (no query beyond the loaded notices): has the workflow written this document?"""
        if self.kind == "permit":
            return bool(ren.permit_no)
        return any(n.kind == self.kind for n in ren.notices) and (self.kind != "acceptance" or
                                                                   ren.accepted_at is not None)


DOCUMENTS: dict[str, Document] = {
    "permit": Document("装修许可证", "print/renovation_permit.html", permit,
                       _l("The renovation permit is issued only after finance has recorded every fee and "
                          "deposit; this renovation has no permit yet."), "permit"),
    "defects": Document("装修预检遗留问题通知书", "print/renovation_defects.html", defects,
                        _l("Engineering has not returned this application with outstanding defects."), "defects"),
    "rectification": Document("整改通知书", "print/renovation_rectification.html", rectification,
                              _l("No completion inspection of this renovation has failed: there is no "
                                 "rectification notice."), "rectification"),
    "acceptance": Document("装修验收合格通知书", "print/renovation_acceptance.html", acceptance,
                           _l("This renovation has not passed its completion inspection yet."), "acceptance"),
}


def printable_documents(ren: Renovation) -> list[dict[str, Any]]:
    """REN-8: the documents this renovation has so far, with their print links (for the details page
    and the unit's archive)."""
    return [{"kind": kind, "title": doc.title, "url": url_for("renovation_print.document", id=ren.id, kind=kind)}
            for kind, doc in DOCUMENTS.items() if doc.exists(ren)]


class RenovationPrintView(SecureView):
    """/admin/renovation-print/<id>/<kind>.pdf; no menu entry (linked from the renovation)."""

    permissions = {"view": BUSINESS}

    def is_visible(self) -> bool:
        return False

    @expose("/")
    def index(self):  # type: ignore[no-untyped-def]
        """Documents are printed from a renovation: the bare address leads to the renovations."""
        self._renovations()
        return redirect(url_for(f"{RENOVATION_ENDPOINT}.index_view"))

    def _renovations(self) -> Any:
        target = admin_view(RENOVATION_ENDPOINT)
        if target is None or not target.is_accessible() or not target.allowed("view"):
            abort(403)
        return target

    @expose("/<int:id>/<kind>.pdf")
    def document(self, id: int, kind: str):  # type: ignore[no-untyped-def]
        doc = DOCUMENTS.get(kind)
        if doc is None:
            abort(404)
        ren = self._renovations().get_one(id)
        if ren is None or getattr(ren, "deleted_at", None) is not None:
            abort(404)
        context = doc.build(ren) if doc.exists(ren) else None
        if context is None:
            return render_template("errors/400.html", reason=doc.missing), 404
        return printed(ren, doc.template, f"{doc.title}-{context['number']}.pdf", d=context, rules=RULES)


def register(admin: Admin) -> None:
    admin.add_view(RenovationPrintView(name=_l("Renovation documents"), endpoint="renovation_print",
                                       url="renovation-print"))
    admin.app.jinja_env.globals.update(renovation_documents=printable_documents)
