"""Security headers from one place (app/security_headers.py): ``nosniff`` on every response,
``no-store`` on every response that hands over a token or secret once, a CSP on every response (the
API's own, the connect page's, and one for ``/docs`` under which the Swagger UI still renders — shown
in Chromium when /usr/bin/chromium is there; a screenshot goes to tests/artifacts/docs-under-csp.png)."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from app import db
from app.security_headers import API_POLICY, docs_policy

from .servers import ServerThread, serve
from .test_service_basics import assert_error

GA = "platform.google-analytics"
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
_PARAMETER = re.compile(r"<(?:(\w+):)?(\w+)>")
_SAMPLES = {"int": "1", "path": "swagger-ui.css", "string": "platform.hubspot", None: "cs_unknown"}


def concrete(rule: str) -> str:
    return _PARAMETER.sub(lambda m: _SAMPLES.get(m.group(1), "x"), rule)


def test_every_route_and_method_answers_with_nosniff(app, client, account):
    seen = 0
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods - {"HEAD"}):
            body = {} if method in {"POST", "PUT"} and rule.rule.startswith("/v4/") else None
            response = client.open(concrete(rule.rule), method=method, json=body, headers=account.headers)
            assert response.headers.get("X-Content-Type-Options") == "nosniff", (method, rule.rule)
            assert response.headers.get("Content-Security-Policy"), (method, rule.rule)
            seen += 1
    for path, status in (("/nowhere", 404), ("/v4/sources/1/nowhere", 404)):
        response = client.get(path, headers=account.headers)
        assert response.status_code == status and response.headers["X-Content-Type-Options"] == "nosniff"
    assert client.get("/v4/sources").headers["X-Content-Type-Options"] == "nosniff"  # 401
    assert seen >= 40


def test_no_store_on_the_responses_that_hand_over_a_token_once(client, operator, account):
    created = client.post("/v4/accounts", json={"name": "Headers"}, headers=operator)
    assert created.status_code == 201 and created.headers["Cache-Control"] == "no-store"
    account_id = created.get_json()["id"]
    token = client.post(f"/v4/accounts/{account_id}/tokens", headers=operator)
    assert token.status_code == 201 and token.headers["Cache-Control"] == "no-store"
    session = client.post("/v4/connect/sessions", headers=account.headers, json={
        "source_type": GA, "redirect_url": "https://app.example/done"})
    assert session.status_code == 201 and session.headers["Cache-Control"] == "no-store"
    refused = client.post("/v4/accounts", json={"name": ""}, headers=operator)  # an error from such a view too
    assert_error(refused, 422, "invalid_body")
    assert refused.headers["Cache-Control"] == "no-store"
    callback = client.get("/v4/oauth/callback?state=unknown&code=x")
    assert callback.status_code == 400 and callback.headers["Cache-Control"] == "no-store"
    webhook = client.post("/v4/webhooks", headers=account.headers, json={
        "url": "https://hooks.example/connect", "events": ["source.created"]})
    assert webhook.status_code == 201 and webhook.headers["Cache-Control"] == "no-store"
    rotated = client.post(f"/v4/webhooks/{webhook.get_json()['id']}/rotate-secret", headers=account.headers,
                          json={})
    assert rotated.status_code == 200 and rotated.headers["Cache-Control"] == "no-store"
    # Views that hand over nothing once are left to the client's judgement.
    for response in (client.get("/v4/accounts", headers=operator),
                     client.get(f"/v4/accounts/{account_id}/tokens", headers=operator),
                     client.get("/v4/sources", headers=account.headers)):
        assert response.status_code == 200 and "Cache-Control" not in response.headers


def test_the_api_the_docs_and_the_connect_page_each_get_a_policy(client, account):
    assert client.get("/v4/sources", headers=account.headers).headers["Content-Security-Policy"] == API_POLICY
    assert client.get("/openapi.json").headers["Content-Security-Policy"] == API_POLICY
    docs = client.get("/docs")
    policy = docs.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy
    assert "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]  # scripts by hash only
    assert policy == docs_policy(docs.get_data()) and "'sha256-" in policy
    page = client.get("/connect/cs_unknown")
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Content-Security-Policy"] != API_POLICY  # the page keeps its own


def test_docs_policy_allows_the_page_inline_scripts_by_hash_only():
    page = b"<script src='/docs-assets/a.js'></script><script>run()</script><script>go()</script>"
    digests = [base64.b64encode(hashlib.sha256(body).digest()).decode() for body in (b"run()", b"go()")]
    assert f"script-src 'self' 'sha256-{digests[0]}' 'sha256-{digests[1]}';" in docs_policy(page)


# --- the Swagger UI in a real browser, under its policy --------------------------------------------


@pytest.fixture
def served(make_app) -> Iterator[str]:
    app = make_app()
    thread = ServerThread(app)
    thread.start()
    try:
        yield thread.base_url
    finally:
        thread.stop()
        db.get_db(app).dispose()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no Chromium at /usr/bin/chromium (apt-get install chromium)")
def test_swagger_ui_renders_under_its_policy_and_refuses_to_be_framed(served):
    sync_api = pytest.importorskip("playwright.sync_api")
    framing = Flask("framing")
    framing.add_url_rule("/", "frame", lambda: f"<!doctype html><iframe id='docs' src='{served}/docs'></iframe>")
    with sync_api.sync_playwright() as playwright, serve(framing) as other_origin:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.set_default_timeout(15_000)
            console: list[str] = []
            page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
            page.goto(served + "/docs")
            page.wait_for_selector(".swagger-ui .opblock-tag")  # the operations, from /openapi.json
            assert page.locator(".swagger-ui .info .title").inner_text().startswith("connect")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "docs-under-csp.png"))
            assert page.locator(".opblock").count() > 20
            page.locator(".opblock-summary").first.click()  # open an operation: parameters, examples
            page.wait_for_selector(".opblock-body .responses-wrapper")
            page.locator(".opblock-body .try-out__btn").first.click()
            page.locator(".opblock-body .execute").first.click()  # a real call from the page: connect-src
            page.wait_for_selector(".opblock-body .live-responses-table")
            page.locator(".models-control, .models h4").first.click()  # the schemas section
            page.locator(".auth-wrapper .authorize").click()  # the Authorize dialog's form
            page.locator(".modal-ux input[type=text]").first.fill("cn_not_a_token")
            page.locator(".modal-ux .auth-btn-wrapper .authorize").first.click()
            page.wait_for_selector(".modal-ux .auth-btn-wrapper .btn-done")
            violations = [line for line in console if "Content Security Policy" in line or "Refused" in line]
            assert not violations, violations

            framed = browser.new_page()
            with framed.expect_console_message(lambda message: "frame-ancestors" in message.text) as refused:
                framed.goto(other_origin + "/")
            assert "has been blocked" in refused.value.text
            assert framed.frame_locator("#docs").locator(".swagger-ui").count() == 0
        finally:
            browser.close()
