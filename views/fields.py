"""Form fields the scaffolded forms need beyond Flask-Admin's: times typed in the site's zone."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask_admin.contrib.sqla.form import AdminModelConverter
from flask_admin.model.form import converts
from flask_babel import get_timezone
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from wtforms import DateTimeField, SelectMultipleField
from wtforms.validators import NumberRange
from wtforms.widgets import CheckboxInput, ListWidget

from views.params import INT64_MAX, INT64_MIN


class CheckboxesField(SelectMultipleField):
    """A checklist ticked on the form, stored as one comma-separated column of choice keys."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()

    def process_data(self, value: Any) -> None:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        super().process_data(value)

    def populate_obj(self, obj: Any, name: str) -> None:
        setattr(obj, name, ",".join(self.data or []) or None)


class LocalDateTimeField(DateTimeField):
    """A time typed in the site's zone (as the screens show it), stored as aware UTC. Flask-Admin
    has no converter for ``UTCDateTime`` columns and would silently leave them out of the form."""

    FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("format", list(self.FORMATS))
        kwargs.setdefault("render_kw", {"placeholder": "YYYY-MM-DD HH:MM"})
        super().__init__(*args, **kwargs)

    def process_formdata(self, valuelist: list[str]) -> None:
        text = " ".join(valuelist).strip().replace("T", " ") if valuelist else ""
        if not text:
            self.data = None
            return
        for fmt in self.FORMATS:
            try:
                local = datetime.strptime(text, fmt)
            except ValueError:
                continue
            self.data = local.replace(tzinfo=ZoneInfo(str(get_timezone()))).astimezone(UTC)
            return
        self.data = None
        raise ValueError(_("Enter a date as 2026-11-30 or 2026-11-30 18:00."))  # a str: the template skips others

    def _value(self) -> str:
        if self.raw_data:
            return " ".join(self.raw_data)
        if self.data is None:
            return ""
        return self.data.astimezone(ZoneInfo(str(get_timezone()))).strftime("%Y-%m-%d %H:%M")


class ModelConverter(AdminModelConverter):
    """Flask-Admin's converter plus aware UTC times (``UTCDateTime``) as local-time inputs and
    integers that no driver could bind refused as a field error (REG-3, views/params.py)."""

    @converts("Integer")  # includes BigInteger and SmallInteger
    def handle_integer_types(self, column: Any, field_args: dict[str, Any], **extra: Any) -> Any:
        field_args["validators"].append(NumberRange(INT64_MIN, INT64_MAX, message=_l(
            "A value is out of range for the database. Nothing was saved.")))
        return super().handle_integer_types(column=column, field_args=field_args, **extra)

    @converts("UTCDateTime")
    def convert_utc_datetime(self, field_args: dict[str, Any], **extra: Any) -> LocalDateTimeField:
        return LocalDateTimeField(**field_args)
