"""One log line per request: request id, user id (never a name), method, path (never the query,
which may hold a searched name), status and duration. Text by default; JSON lines when
``LOG_FORMAT=json`` for a log collector. The id comes from the proxy's ``X-Request-ID`` when it is
a plain token (nginx ``$request_id``), else a new one, and is sent back in the response."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from datetime import UTC, datetime

from flask import Flask, Response, g, request

log = logging.getLogger("pm.request")
TOKEN = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
FIELDS = ("request_id", "user_id", "method", "path", "status", "duration_ms")
HANDLER_MARK = "_pm_handler"


class JsonFormatter(logging.Formatter):
    """A JSON object per line: time, level, logger, message and the request's fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({k: getattr(record, k) for k in FIELDS if hasattr(record, k)})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


def configure(app: Flask) -> None:
    """The ``pm`` loggers (requests, scheduled jobs) to stderr, once per process; under TESTING
    they only propagate (pytest's caplog reads them)."""
    root = logging.getLogger("pm")
    root.setLevel(logging.INFO)
    if app.config.get("TESTING") or any(getattr(h, HANDLER_MARK, False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    setattr(handler, HANDLER_MARK, True)
    if str(app.config.get("LOG_FORMAT", "")).lower() == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.addHandler(handler)
    root.propagate = False


def _start() -> None:
    incoming = request.headers.get("X-Request-ID", "")
    g.pm_request_id = incoming if TOKEN.match(incoming) else uuid.uuid4().hex
    g.pm_started = time.perf_counter()


def _finish(response: Response) -> Response:
    request_id = g.get("pm_request_id") or uuid.uuid4().hex
    started = g.get("pm_started")
    duration = round((time.perf_counter() - started) * 1000, 1) if started is not None else None
    user = g.get("_login_user")  # only if the request loaded it: logging costs no query
    user_id = getattr(user, "id", None) if getattr(user, "is_authenticated", False) else None
    fields = {
        "request_id": request_id,
        "user_id": user_id,
        "method": request.method,
        "path": request.path,
        "status": response.status_code,
        "duration_ms": duration,
    }
    log.info(
        "%s %s %s %s ms user=%s id=%s",
        request.method,
        request.path,
        response.status_code,
        duration,
        user_id if user_id is not None else "-",
        request_id,
        extra=fields,
    )
    response.headers["X-Request-ID"] = request_id
    return response


def init_app(app: Flask) -> None:
    app.config.setdefault("LOG_FORMAT", "text")
    configure(app)
    app.before_request_funcs.setdefault(None, []).insert(0, _start)  # before any hook may answer
    app.after_request(_finish)
