"""The hosted connect page in a real browser: Playwright driving Debian's Chromium against the service
served on 127.0.0.1, with the test OAuth provider, the data API and the embedded job worker.

Screenshots of each step go to tests/artifacts/connect-page-NN-*.png (git-ignored).
Needs /usr/bin/chromium (``apt-get install chromium``; .ci/run installs it); never downloads a browser.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask import Flask, request

from app import db

from .connectors_support import Servers, running_servers
from .servers import ServerThread, serve
from .test_connect_page import TYPE, register_operator_app

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
TIMEOUT = 5

# .ci/run sets CONNECT_REQUIRE_BROWSER=1: there a missing browser fails the run instead of skipping.
REQUIRED = os.environ.get("CONNECT_REQUIRE_BROWSER") == "1"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and not REQUIRED,
    reason="browser test skipped: no Chromium at /usr/bin/chromium (apt-get install -y chromium; .ci/run does)")
if REQUIRED:
    from playwright import sync_api
else:
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="browser test skipped: the playwright package is missing")


def integrator_app() -> Flask:
    """The integrator's page the connect page sends the browser back to."""
    app = Flask("integrator")

    @app.get("/connected")
    def connected() -> str:
        source_id = request.args.get("source_id", "")
        error = request.args.get("error", "")
        return (f"<!doctype html><title>Integrator</title><h1 id='result'>source_id={source_id} "
                f"error={error}</h1>").replace("<script", "")

    return app


@pytest.fixture
def service(make_app) -> Iterator[tuple[Flask, str]]:
    """The service on 127.0.0.1 with its embedded worker, its public URL its own address."""
    app = make_app(EMBEDDED_WORKER=True, HTTP_TIMEOUT=5.0)
    thread = ServerThread(app)
    app.config["PUBLIC_URL"] = thread.base_url
    thread.start()
    try:
        yield app, thread.base_url
    finally:
        app.extensions["connect.worker"].stop()
        thread.stop()
        db.get_db(app).dispose()


@pytest.fixture
def servers() -> Iterator[Servers]:
    with running_servers() as running:
        yield running


@pytest.fixture
def browser() -> Iterator:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            yield launched
        finally:
            launched.close()


def shot(page, number: int, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"connect-page-{number:02d}-{name}.png"), full_page=True)


def test_a_user_connects_a_source_in_the_browser(service, servers, browser, operator, new_account) -> None:
    app, base = service
    account = new_account("Acme")
    register_operator_app(lambda path, **kw: requests.put(base + path, timeout=TIMEOUT, **kw), operator,
                          servers.provider, base)
    with serve(integrator_app()) as integrator:
        created = requests.post(base + "/v4/connect/sessions", headers=account.headers, timeout=TIMEOUT, json={
            "source_type": TYPE, "redirect_url": integrator + "/connected",
            "display": {"title": "Acme Analytics", "primary_color": "#0a7d33"}})
        assert created.status_code == 201, created.text
        url = created.json()["url"]

        context = browser.new_context(viewport={"width": 1024, "height": 800})
        page = context.new_page()
        page.set_default_timeout(15_000)
        console_errors: list[str] = []
        page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)

        # 1. The form, branded, built from the card's json_schemas.
        page.goto(url)
        expect = sync_api.expect
        expect(page.get_by_role("heading", name="Connect Test: Connect OAuth")).to_be_visible()
        expect(page.locator(".brand-title")).to_have_text("Acme Analytics")
        expect(page.locator(".brand")).to_have_css("border-bottom-color", "rgb(10, 125, 51)")
        expect(page.get_by_label("Workspace key")).to_have_attribute("type", "password")
        shot(page, 1, "form")

        # 2. A bad value: the server's reason shows next to the field, which gets the focus.
        port = servers.provider_url.rsplit(":", 1)[1]
        page.get_by_label("Provider port").fill("abc")
        page.get_by_label("Api url").fill(servers.api_url)
        page.get_by_label("Plan").select_option("team")
        page.get_by_role("button", name="Continue").click()
        error = page.locator("#e-provider_port")
        expect(error).to_contain_text("must be 2 to 5 digits")
        expect(page.get_by_label("Provider port")).to_be_focused()
        expect(page.get_by_label("Provider port")).to_have_attribute("aria-invalid", "true")
        shot(page, 2, "field-error")

        # 3. Fixed: on to the OAuth step.
        page.get_by_label("Provider port").fill(port)
        page.get_by_role("button", name="Continue").click()
        connect_button = page.get_by_role("button", name="Connect with Test: Connect OAuth")
        expect(connect_button).to_be_visible()
        shot(page, 3, "oauth")

        # 4. The managed handshake in the same window (keyboard only), back to the check's progress.
        connect_button.focus()
        page.keyboard.press("Enter")
        # The page's URL is the same before and after the round trip, so wait for what it shows; the
        # embedded worker may already have finished the check by the time the browser is back.
        expect(page.get_by_role("heading", name=re.compile("Checking the connection|Choose what to sync"))
               ).to_be_visible()
        assert page.url == url
        shot(page, 4, "checking")

        # 5. The page follows the check by itself and offers the streams.
        expect(page.get_by_role("heading", name="Choose what to sync")).to_be_visible(timeout=30_000)
        expect(page.get_by_label("secret_stuff")).to_be_disabled()
        page.get_by_label("contacts").check()
        page.get_by_text("Fields of contacts").click()
        page.locator("#sf-contacts-email").uncheck()
        shot(page, 5, "streams")

        # 6. Finished: back at the integrator with the source's id.
        page.get_by_role("button", name="Save and finish").click()
        page.wait_for_url(integrator + "/connected?*")
        source_id = parse_qs(urlsplit(page.url).query)["source_id"][0]
        shot(page, 6, "redirected")
        assert not [m for m in console_errors if "Content Security Policy" in m], console_errors
        context.close()

    source = requests.get(f"{base}/v4/sources/{source_id}", headers=account.headers, timeout=TIMEOUT).json()
    assert source["report_card"]["current_step_type"] == "fully_configured"
    assert source["setup_state"] == "connected"
    streams = requests.get(f"{base}/v4/sources/{source_id}/streams", headers=account.headers, timeout=TIMEOUT).json()
    assert [s["tap_stream_id"] for s in streams if s["selected"]] == ["contacts"]


def test_the_page_works_on_a_narrow_screen_with_the_keyboard(service, browser, new_account) -> None:
    _app, base = service
    account = new_account("Acme")
    created = requests.post(base + "/v4/connect/sessions", headers=account.headers, timeout=TIMEOUT, json={
        "source_type": TYPE, "redirect_url": "https://app.example/connected"})
    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True)
    page = context.new_page()
    page.goto(created.json()["url"])
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    # Tab order: the skip link first, then the form's first input, with a visible focus ring.
    page.keyboard.press("Tab")
    sync_api.expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Tab")
    sync_api.expect(page.get_by_label("Provider port")).to_be_focused()
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", ""), outline
    shot(page, 7, "narrow")
    context.close()


# -- the end user's form for real source types: screenshots for docs/, axe-core accessibility ----------

DOCS = Path(__file__).resolve().parent.parent / "docs"
FORMS = [
    # (type, docs/ file, the first input a keyboard user reaches, labels the form must show in order)
    ("platform.hp-postgres", "connect-form-postgres.png", "Host", ["Host", "Port", "Database", "User", "Password"]),
    ("platform.hubspot", "connect-form-hubspot.png", "Start date", ["Start date"]),
    ("platform.google-analytics", "connect-form-google-analytics.png", "Start date",
     ["Start date", "View ID", "Reports"]),
]


def field_label(title: str) -> re.Pattern[str]:
    """An input's label: its title, then a "*" and "(required)" (visually hidden) when it is."""
    return re.compile(rf"^{re.escape(title)}( \*)?( \(required\))?$")


def serious_violations(page) -> list[str]:
    """axe-core (bundled by axe-playwright-python) on the page as it stands: every violation of
    impact serious or critical (missing labels, contrast, focus order, ARIA misuse…)."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
            for v in results.response["violations"] if v["impact"] in ("serious", "critical")]


@pytest.mark.parametrize(("source_type", "file_name", "first_input", "labels"), FORMS, ids=[f[0] for f in FORMS])
def test_a_real_types_form_reads_like_a_product_and_passes_axe(service, browser, new_account, source_type,
                                                               file_name, first_input, labels) -> None:
    _app, base = service
    account = new_account("Acme")
    created = requests.post(base + "/v4/connect/sessions", headers=account.headers, timeout=TIMEOUT, json={
        "source_type": source_type, "redirect_url": "https://app.example/connected",
        "display": {"title": "Acme Analytics"}})
    assert created.status_code == 201, created.text
    context = browser.new_context(viewport={"width": 900, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(created.json()["url"])
    expect = sync_api.expect

    # Keyboard: the skip link, the setup guide, then the form's first input.
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name=re.compile("How to set up"))).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_label(field_label(first_input))).to_be_focused()

    # Titles, not raw names; in the layout's order; help text in words, never a regex.
    shown = page.locator("form.settings label").all_inner_texts()
    positions = [next(i for i, text in enumerate(shown) if text.startswith(label)) for label in labels]
    assert positions == sorted(positions), shown
    body = page.locator("main").inner_text()
    assert "^" not in body and "Must match" not in body and "Dbname" not in body, body
    expect(page.get_by_role("link", name=re.compile("How to set up"))).to_have_attribute("href", re.compile("^https://"))
    if source_type == "platform.hp-postgres":  # the database connector checks and discovers it
        expect(page.locator("#availability")).to_have_count(0)
    else:
        # A Singer type whose tap this deployment has not installed: saved, not checkable yet.
        expect(page.locator("#availability")).to_contain_text("This service has not finished setting up")
    # Scheduling is folded away under Advanced, with readable choices.
    advanced = page.locator("#g-advanced")
    expect(advanced).not_to_have_attribute("open", "")
    advanced.locator("summary").click()
    frequency = page.get_by_label(field_label("Sync frequency"))
    expect(frequency.locator("option", has_text=re.compile("^Every hour$"))).to_have_attribute("value", "60")
    expect(frequency.locator("option").first).to_have_text(re.compile(r"^Default \(every"))
    advanced.locator("summary").click()

    assert serious_violations(page) == []
    page.screenshot(path=str(DOCS / file_name), full_page=True)

    # With errors shown (Continue on an empty form) the page stays accessible.
    page.get_by_role("button", name="Continue").click()
    expect(page.locator(".field-error").first).to_be_visible()
    assert serious_violations(page) == []
    context.close()


def test_a_checkbox_saves_stitchs_true_and_false_strings(service, browser, new_account) -> None:
    _app, base = service
    account = new_account("Acme")
    created = requests.post(base + "/v4/connect/sessions", headers=account.headers, timeout=TIMEOUT, json={
        "source_type": "platform.hp-postgres", "redirect_url": "https://app.example/connected"})
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(created.json()["url"])
    for label, value in [("Host", "db.example.com"), ("Port", "5432"), ("Database", "shop"), ("User", "reader"),
                         ("Password", "pw-" + os.urandom(8).hex())]:
        page.get_by_label(field_label(label)).fill(value)
    page.get_by_label(field_label("Use SSL")).check()
    page.get_by_role("button", name="Continue").click()
    expect = sync_api.expect
    expect(page.get_by_role("heading", name=re.compile("Checking the connection|Connect"))).to_be_visible()
    sources = requests.get(base + "/v4/sources", headers=account.headers, timeout=TIMEOUT).json()["data"]
    assert sources[0]["properties"]["ssl"] == "true"
    assert "use_log_based_replication" not in sources[0]["properties"]  # never ticked: left unset
    context.close()
