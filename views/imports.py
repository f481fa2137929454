"""Quick setup from Excel: upload units or residents, see the row errors, then import (REG-1..3).

Supervisors only: the file carries national ID numbers (ACC-6) and writes the registry in bulk.
The import logic lives in seed.importer; this screen only takes the file and shows the report.
"""

from __future__ import annotations

import io
from typing import Any

from flask import abort, send_file
from flask_admin import expose
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf.file import FileAllowed, FileField, FileRequired, FileSize
from wtforms import RadioField, SelectField

from models import db
from security.accounts import log_event
from seed.importer import KINDS, MAX_BYTES, MAX_ROWS, run_import, template_workbook
from views.base import SecureForm, SecureView
from views.roles import SUPERVISORS

KIND_CHOICES = [("units", _l("Units (estate, building, unit, floor, area, use)")),
                ("residents", _l("Residents and their occupancies"))]
MODE_CHOICES = [("dry_run", _l("Check only: validate every row and write nothing")),
                ("all_or_nothing", _l("Import all rows, or nothing if any row has an error")),
                ("valid_only", _l("Import the valid rows only and skip the rows with errors"))]
ERRORS_SHOWN = 500  # a table of 20,000 errors helps nobody; the count says how many more


class ImportForm(SecureForm):
    file = FileField(_l("File (.xlsx or .csv)"), validators=[
        FileRequired(_l("Choose a file.")),
        FileAllowed(["xlsx", "csv"], _l("Only .xlsx or .csv files can be imported.")),
        FileSize(MAX_BYTES, message=_l("The file is larger than %(mb)d MB; split it into several files.",
                                       mb=MAX_BYTES // (1024 * 1024))),
    ])
    kind = SelectField(_l("What the file holds"), choices=KIND_CHOICES, default="units")
    mode = RadioField(_l("Mode"), choices=MODE_CHOICES, default="dry_run")


class ImportView(SecureView):
    permissions = {"view": SUPERVISORS}

    @expose("/", methods=("GET", "POST"))
    def index(self):  # type: ignore[no-untyped-def]
        form = ImportForm()
        report = None
        if form.validate_on_submit():
            upload = form.file.data
            db.session.rollback()  # the import owns the transaction from here
            report = run_import(db.session, upload.read(MAX_BYTES + 1), upload.filename or "",
                                form.kind.data, form.mode.data)
            if report.written:
                log_event("data_import", staff=current_user,
                          detail=f"{report.kind}: {report.valid} of {report.total} rows ({report.mode})")
                db.session.commit()
        return self.render("admin/import/index.html", form=form, report=report, max_rows=MAX_ROWS,
                           errors_shown=ERRORS_SHOWN, kinds=KIND_CHOICES)

    @expose("/template/<kind>.xlsx")
    def template(self, kind: str):  # type: ignore[no-untyped-def]
        """An empty workbook with the Chinese header row the importer expects."""
        if kind not in KINDS:
            abort(404)
        return send_file(io.BytesIO(template_workbook(kind)), as_attachment=True,
                         download_name=f"import-{kind}-template.xlsx",
                         mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")


def register(admin: Any) -> None:
    admin.add_view(ImportView(name=_l("Quick setup from Excel"), category=_l("Estate registry"),
                              endpoint="data_import", url="import"))
