"""Security headers on every response and HTTPS behind a trusted TLS proxy (ACC-7)."""

from __future__ import annotations

import re
from typing import Any

from tests.conftest import CSRF, PASSWORD, login
from tests.test_session_security import events, session_name

# --- CSP and the other headers ------------------------------------------------------------------

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)([^>]*)>", re.I)
INLINE_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.I)


def csp_of(response: Any) -> dict[str, str]:
    policy = response.headers["Content-Security-Policy"]
    return {part.strip().split(" ", 1)[0]: part.strip().partition(" ")[2] for part in policy.split(";")}


def assert_no_inline_script(response: Any) -> None:
    """Inline <script> only with this response's nonce, and no on*= handler attributes."""
    html = response.get_data(as_text=True)
    nonce = csp_of(response)["script-src"].split("'nonce-")[1].split("'")[0]
    for attrs in INLINE_SCRIPT.findall(html):
        assert f'nonce="{nonce}"' in attrs, attrs
    assert not INLINE_HANDLER.search(html), INLINE_HANDLER.search(html).group(0)


def test_acc_7_html_has_csp_without_inline_script(app, login_as):
    anon = app.test_client().get("/login")
    policy = csp_of(anon)
    assert "'unsafe-inline'" not in policy["script-src"] and "'self'" in policy["script-src"]
    assert "'nonce-" in policy["script-src"]
    assert policy["frame-ancestors"] == "'none'" and policy["object-src"] == "'none'"
    assert policy["base-uri"] == "'self'" and policy["form-action"] == "'self'"
    assert csp_of(app.test_client().get("/login"))["script-src"] != policy["script-src"]  # nonce per request
    assert_no_inline_script(anon)
    admin = login_as("admin")
    for path in ("/admin/", "/admin/staff/", "/admin/security_event/", "/admin/staff/new/"):
        response = admin.get(path)
        assert response.status_code == 200, path
        assert_no_inline_script(response)


def test_acc_7_workflow_and_signature_pages_have_no_inline_script(app, login_as, db_session):
    """The signature pad and the confirm prompts now come from static files, not inline code."""
    from tests.helpers import make_visit

    visit_id = make_visit(method="on_site").id
    db_session.commit()
    clerk = login_as("cs_clerk")
    page = clerk.get(f"/admin/visit/details/?id={visit_id}")
    html = page.get_data(as_text=True)
    assert 'id="signature-pad"' in html and "js/signature-pad.js" in html and "js/app.js" in html
    assert "data-confirm=" in html
    assert_no_inline_script(page)
    assert_no_inline_script(clerk.get("/admin/visit/"))
    script = clerk.get("/static/js/signature-pad.js")
    assert script.status_code == 200 and "signature-pad" in script.get_data(as_text=True)


def test_acc_7_common_security_headers_on_every_response(app, login_as):
    for response in (app.test_client().get("/login"), login_as("cs_clerk").get("/admin/"),
                     app.test_client().get("/static/js/app.js")):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "same-origin"
        assert "camera=()" in response.headers["Permissions-Policy"]
        assert "geolocation=()" in response.headers["Permissions-Policy"]
        assert "Server" not in response.headers  # the app adds no banner


def test_acc_7_authenticated_pages_are_not_stored(app, login_as):
    clerk = login_as("cs_clerk")
    for path in ("/admin/", "/admin/unit/", "/password"):
        assert clerk.get(path).headers["Cache-Control"] == "no-store", path
    assert "no-store" not in (clerk.get("/static/js/app.js").headers.get("Cache-Control") or "")


def test_acc_7_hsts_only_over_https(app, staff_ids):
    assert "Strict-Transport-Security" not in app.test_client().get("/login").headers
    secure = app.test_client().get("/login", base_url="https://localhost")
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=")


def test_acc_7_forwarded_proto_ignored_without_trusted_proxy(app, staff_ids):
    """A client cannot claim HTTPS: no HSTS, no Secure cookie from X-Forwarded-Proto alone."""
    client = app.test_client()
    client.environ_base["HTTP_X_FORWARDED_PROTO"] = "https"
    assert "Strict-Transport-Security" not in client.get("/login").headers
    response = login(client, "clerk")
    assert response.status_code == 302
    cookie = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(session_name(app))][-1]
    assert "Secure" not in cookie


def test_acc_7_tls_proxy_makes_cookie_secure_and_sends_hsts(app, staff_ids, monkeypatch):
    """Behind one trusted TLS proxy (TRUSTED_PROXIES=1), X-Forwarded-Proto: https makes the
    request secure: the session cookie is Secure and HSTS is sent."""
    monkeypatch.setitem(app.config, "TRUSTED_PROXIES", 1)
    client = app.test_client()
    client.environ_base.update({"HTTP_X_FORWARDED_PROTO": "https", "HTTP_X_FORWARDED_FOR": "198.51.100.9"})
    page = client.get("/login")
    assert page.headers["Strict-Transport-Security"].startswith("max-age=")
    token = CSRF.search(page.get_data(as_text=True)).group(1)
    response = client.post("/login", headers={"Referer": "https://localhost/login"},
                           data={"csrf_token": token, "username": "clerk", "password": PASSWORD})
    assert response.status_code == 302
    cookie = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(session_name(app))][-1]
    assert "Secure" in cookie and "HttpOnly" in cookie
    assert [r.ip for r in events(app, "login")] == ["198.51.100.9"]
