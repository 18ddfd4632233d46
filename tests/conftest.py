"""Fixtures: a migrated database per test session (SQLite file, or a PostgreSQL schema of its own
when CONNECT_DATABASE_URL points at PostgreSQL), an app, a client, the operator and accounts.

Tables are emptied after every test, so tests do not see each other's rows.

The secrets scan: every response of every service app (however a test builds it) and every log line
formatted by the service's formatter (app/logs.py) is kept, and at the end of the session searched
for every planted secret value (tests/servers/planted.py: what the test servers issue and accept,
what tests plant, what requests hand the service as credentials). One hit fails the run and the
report names the test, the response or log line, and where the value came from.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from flask import Flask, Response, current_app, has_app_context, request, request_finished
from flask.testing import FlaskClient
from requests.adapters import HTTPAdapter
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from werkzeug.exceptions import HTTPException

from app import create_app
from app.config import DEFAULT_REPORT_CARDS
from app.crypto import generate_key_spec
from app.db import in_write_transaction
from app.logs import JsonFormatter, RequestIdFilter
from app.migrations import upgrade
from app.models import Base, load_all_models

from .servers import HOOK_PATH, WebhookReceiver, create_webhook_receiver, serve
from .servers.planted import MIN_LENGTH, plant, planted_values

load_all_models()

TESTS = Path(__file__).resolve().parent
OPERATOR_TOKEN = "op_test_" + secrets.token_hex(8)
TEST_KEYS = generate_key_spec()
plant(OPERATOR_TOKEN, "conftest:operator_token")


# --- the secrets scan -----------------------------------------------------------------------------

# Characters of the values the suite plants and the servers issue (hex, base64url, Authlib tokens).
_TOKEN_CLASS = r"[A-Za-z0-9._~+/=-]"
_TOKEN_CHARS = re.compile(_TOKEN_CLASS + "+")
_WINDOW = MIN_LENGTH  # every planted value is at least one window long
_TOKEN_RUN = re.compile(_TOKEN_CLASS + "{" + str(_WINDOW) + ",}")
_ACCOUNT_TOKEN_PATH = re.compile(r"^/v4/accounts(/\d+/tokens)?$")
_WEBHOOK_SECRET_PATH = re.compile(r"^/v4/webhooks(/\d+/rotate-secret)?$")
_CALLBACK_PATH = "/v4/oauth/callback"
_CREDENTIAL_BODY_FIELDS = ("client_secret",)


@dataclass(frozen=True)
class Scanned:
    """One response or log line the service produced, and the test during which it did."""

    test: str
    kind: str  # "response" or "log"
    label: str
    text: str


@dataclass(frozen=True)
class Hit:
    scanned: Scanned
    value: str
    origin: str

    def describe(self) -> str:
        at = self.scanned.text.find(self.value)
        excerpt = self.scanned.text[max(0, at - 120):at + len(self.value) + 120]
        excerpt = excerpt.replace(self.value, f"<{self.origin} {self.value[:4]}…>").replace("\n", " | ")
        return (f"{self.scanned.test}: {self.scanned.kind} {self.scanned.label} carries a planted "
                f"{self.origin} value: …{excerpt}…")


def find_planted(texts: Iterable[Scanned], values: Mapping[str, str]) -> list[Hit]:
    """Every planted value in every text, in time linear in the texts' length: long runs of token
    characters are slid over with a window of 16, each window looked up among the values' first 16
    characters (a substring test per value per text would take minutes over a whole suite)."""
    by_prefix: dict[str, list[str]] = {}
    others: list[str] = []
    for value in values:
        if _TOKEN_CHARS.fullmatch(value):
            by_prefix.setdefault(value[:_WINDOW], []).append(value)
        else:
            others.append(value)
    hits = []
    for scanned in texts:
        found: set[str] = set()
        for run in _TOKEN_RUN.finditer(scanned.text):
            chunk = run.group()
            for start in range(len(chunk) - _WINDOW + 1):
                for value in by_prefix.get(chunk[start:start + _WINDOW], ()):
                    if chunk.startswith(value, start):
                        found.add(value)
        found.update(value for value in others if value in scanned.text)
        hits += [Hit(scanned, value, values[value]) for value in sorted(found)]
    return hits


@dataclass
class SecretScan:
    """What the service said during the session: kept as it happened, searched once at the end."""

    responses: list[Scanned] = field(default_factory=list)
    log_lines: list[Scanned] = field(default_factory=list)
    server_errors: list[str] = field(default_factory=list)
    bodies_skipped: int = 0
    seconds: float = 0.0
    current_test: str = "(outside any test)"

    def hits(self) -> list[Hit]:
        return find_planted([*self.responses, *self.log_lines], planted_values())


SCAN = SecretScan()
FIGURES: list[str] = []


# --- no network call inside a write transaction -----------------------------------------------------

# Every HTTP request any code sends through requests (the service's calls to providers and source
# APIs, Authlib's code exchange) is checked: one sent while its thread is inside begin_write is kept
# here (method and path, never the query: it may hold a credential) and fails the run at the end.
NETWORK_IN_WRITE: list[str] = []
_adapter_send = HTTPAdapter.send


def _send_outside_write_transactions(self: HTTPAdapter, request: Any, *args: Any, **kwargs: Any) -> Any:
    if in_write_transaction():
        NETWORK_IN_WRITE.append(f"{SCAN.current_test}: {request.method} {urlsplit(request.url).path}")
    return _adapter_send(self, request, *args, **kwargs)


HTTPAdapter.send = _send_outside_write_transactions  # type: ignore[method-assign]


def report_figure(line: str) -> None:
    """A figure for the end-of-run summary (faults injected, tokens lost…)."""
    FIGURES.append(line)


def _plant_credentials_of(values: Any, card: Any, origin: str) -> None:
    if not isinstance(values, Mapping) or card is None:
        return
    for name, value in values.items():
        spec = card.properties.get(name)
        if spec is not None and spec.is_credential:
            plant(value, f"{origin}.{name}")


def _plant_request_credentials(response: Response) -> None:
    """Register the credentials a request hands the service: the credential properties of a source
    (by its card), ``secret_id``, and OAuth client secrets."""
    from app.catalog import get_catalog

    try:
        body = request.get_json(silent=True) if request.is_json else None
    except (HTTPException, RecursionError):  # a body the service refused to read (413, too deep)
        return
    if not isinstance(body, dict):
        return
    if request.path.startswith("/v4/sources"):
        plant(body.get("secret_id"), "request:secret_id")
        answer = response.get_json(silent=True) if response.is_json else None
        source_type = body.get("type") or (answer.get("type") if isinstance(answer, dict) else None)
        card = get_catalog().get(source_type) if isinstance(source_type, str) else None
        _plant_credentials_of(body.get("properties"), card, "request:properties")
    elif request.path.startswith("/v4/oauth/"):
        source_type = body.get("source_type")
        card = get_catalog().get(source_type) if isinstance(source_type, str) else None
        _plant_credentials_of(body.get("oauth_input_configuration"), card, "request:oauth_input_configuration")
        configuration = body.get("configuration")
        if isinstance(configuration, Mapping):
            for name in _CREDENTIAL_BODY_FIELDS:
                plant(configuration.get(name), f"request:configuration.{name}")


def _response_text(response: Response) -> str:
    """Status, headers and body, less what the contract hands over (each exclusion is the value
    itself, which is registered instead, so a copy anywhere else is still a hit):

    * ``POST /v4/accounts`` and ``POST /v4/accounts/{id}/tokens`` (201): ``token``, the new account
      token, shown once (API.md, Accounts);
    * ``GET /v4/oauth/callback`` (302): the ``secret_id`` added to the integrator's redirect URL — in
      ``Location`` and in the HTML body werkzeug repeats it in (API.md, OAuth);
    * ``POST /v4/webhooks`` (201) and ``POST /v4/webhooks/{id}/rotate-secret`` (200): ``secret``, the
      endpoint's new signing secret, shown once (README, Webhooks).
    """
    if response.direct_passthrough or response.is_streamed:
        SCAN.bodies_skipped += 1  # files (docs assets): reading would consume the stream
        body = ""
    else:
        body = response.get_data(as_text=True)
    handed_over: list[str] = []
    if request.method == "POST" and response.status_code == 201 and _ACCOUNT_TOKEN_PATH.match(request.path):
        answer = response.get_json(silent=True)
        if isinstance(answer, dict) and isinstance(answer.get("token"), str):
            plant(answer["token"], "service:account_token")
            handed_over.append(answer["token"])
    if request.method == "POST" and response.status_code in (200, 201) and _WEBHOOK_SECRET_PATH.match(request.path):
        answer = response.get_json(silent=True)
        if isinstance(answer, dict) and isinstance(answer.get("secret"), str):
            plant(answer["secret"], "service:webhook_secret")
            # The base64 key alone is as secret as the whsec_ form (and contains no '_' for the scan).
            plant(answer["secret"].removeprefix("whsec_"), "service:webhook_secret_key")
            handed_over.append(answer["secret"])
    if request.path == _CALLBACK_PATH and response.location:
        secret_id = dict(parse_qsl(urlsplit(response.location).query)).get("secret_id")
        if secret_id:
            plant(secret_id, "service:secret_id")
            handed_over.append(secret_id)
    headers = "\n".join(f"{name}: {value}" for name, value in response.headers.items())
    text = f"HTTP {response.status_code}\n{headers}\n\n{body}"
    for value in handed_over:
        text = text.replace(value, "<handed over by contract>")
    return text


def _record_response(sender: Flask, response: Response, **_: Any) -> None:
    """``request_finished`` of every Flask app: the service's responses are kept (the test servers'
    are not the service's words). Runs after every ``after_request`` hook, so headers are final."""
    if sender.import_name != "app":
        return
    label = f"{request.method} {request.path} → {response.status_code}"
    _plant_request_credentials(response)
    SCAN.responses.append(Scanned(SCAN.current_test, "response", label, _response_text(response)))
    if response.status_code >= 500:
        SCAN.server_errors.append(f"{SCAN.current_test}: {label}")


class ScannedLogHandler(logging.Handler):
    """The service's stderr handler, stood in for: ``configure_logging`` finds ``connect_json`` and
    adds no handler of its own, so each line is formatted once, kept for the scan and written on."""

    connect_json = True

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.addFilter(RequestIdFilter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            # A test server's own lines (Authlib's server logs issued tokens at DEBUG) are the
            # provider's words, not the service's: in production they are written elsewhere.
            if not (has_app_context() and current_app.import_name.startswith("tests.servers")):
                SCAN.log_lines.append(Scanned(SCAN.current_test, "log", f"[{record.name}]", line))
            sys.stderr.write(line + "\n")  # the current stderr: pytest's capture of this test
        except Exception:
            self.handleError(record)


request_finished.connect(_record_response)
logging.getLogger().addHandler(ScannedLogHandler())
_SCAN_RESULT = pytest.StashKey[list[Hit]]()


def pytest_runtest_logstart(nodeid: str, location: tuple[str, int | None, str]) -> None:
    SCAN.current_test = nodeid


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Search everything kept for every planted value; a hit fails the run."""
    if not SCAN.responses and not SCAN.log_lines:
        return
    started = time.perf_counter()
    hits = SCAN.hits()
    SCAN.seconds = time.perf_counter() - started
    session.config.stash[_SCAN_RESULT] = hits
    if hits or NETWORK_IN_WRITE:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    for line in FIGURES:
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"HTTP requests sent inside a write transaction: {len(NETWORK_IN_WRITE)}",
                                red=bool(NETWORK_IN_WRITE), green=not NETWORK_IN_WRITE)
    for line in NETWORK_IN_WRITE[:20]:
        terminalreporter.write_line("NETWORK IN WRITE TRANSACTION " + line, red=True)
    hits = config.stash.get(_SCAN_RESULT, None)
    if hits is None:
        return
    size = sum(len(s.text) for s in SCAN.responses) + sum(len(s.text) for s in SCAN.log_lines)
    terminalreporter.write_line(
        f"secrets scan: {len(planted_values())} planted values searched in {len(SCAN.responses)} responses "
        f"({SCAN.bodies_skipped} file bodies skipped) and {len(SCAN.log_lines)} log lines "
        f"({size / 1e6:.1f} MB) in {SCAN.seconds:.2f} s: {len(hits)} hits; "
        f"5xx responses: {len(SCAN.server_errors)}",
        red=bool(hits), green=not hits)
    for hit in hits[:50]:
        terminalreporter.write_line("LEAK " + hit.describe(), red=True)
    for line in SCAN.server_errors[:20]:
        terminalreporter.write_line("5xx " + line, yellow=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("CONNECT_SLOW_TESTS") == "1":
        return
    skip_slow = pytest.mark.skip(reason="slow: set CONNECT_SLOW_TESTS=1 (as .ci/run does)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


def _postgres_url_with_schema(url: str, schema: str) -> str:
    parsed = make_url(url)
    query = dict(parsed.query)
    query["options"] = f"-csearch_path={schema}"
    return parsed.set(query=query).render_as_string(hide_password=False)


@contextmanager
def _empty_database(tmp_path: Path) -> Iterator[str]:
    """A new, empty database on the suite's server: a schema of its own on PostgreSQL, a file on SQLite."""
    configured = os.environ.get("CONNECT_DATABASE_URL", "")
    if configured.startswith("postgresql"):
        schema = f"test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        admin = create_engine(configured)
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            yield _postgres_url_with_schema(configured, schema)
        finally:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
    else:
        yield f"sqlite:///{tmp_path / 'connect.db'}"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with _empty_database(tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture()
def empty_database(tmp_path: Path) -> Iterator[str]:
    """A database of this test's own, not migrated (for tests of the migrations themselves)."""
    with _empty_database(tmp_path) as url:
        yield url


@pytest.fixture(scope="session")
def migrated_database(database_url: str) -> str:
    engine = create_engine(database_url)
    upgrade(engine)
    engine.dispose()
    return database_url


def base_config(database_url: str, **overrides: object) -> dict[str, object]:
    config: dict[str, object] = {
        "TESTING": True,
        "DATABASE_URL": database_url,
        "OPERATOR_TOKEN": OPERATOR_TOKEN,
        "REPORT_CARDS": os.pathsep.join([str(DEFAULT_REPORT_CARDS), str(TESTS / "report_cards")]),
        "LOG_LEVEL": "INFO",
        "ENCRYPTION_KEYS": TEST_KEYS,
        # The test servers and databases run on this machine.
        "ALLOWED_SOURCE_NETWORKS": "127.0.0.0/8,::1/128",
        # The database connector's tests (and the README's walk) create these deprecated types.
        "ALLOWED_DEPRECATED_TYPES": "platform.mariadb,platform.mysql",
    }
    config.update(overrides)
    return config


@pytest.fixture(scope="session")
def app(migrated_database: str) -> Iterator[Flask]:
    application = create_app(base_config(migrated_database))
    yield application
    from app.db import get_db

    get_db(application).dispose()


@pytest.fixture()
def make_app(migrated_database: str) -> Iterator:
    """Build another app on the test database with other settings."""
    built: list[Flask] = []

    def build(**overrides: object) -> Flask:
        application = create_app(base_config(migrated_database, **overrides))
        built.append(application)
        return application

    yield build
    from app.db import get_db

    for application in built:
        get_db(application).dispose()


@pytest.fixture(autouse=True)
def _empty_tables(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "migrated_database" not in request.fixturenames:
        return
    url = request.getfixturevalue("migrated_database")
    engine = create_engine(url)
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(Base.metadata.sorted_tables):
                connection.execute(table.delete())
    engine.dispose()


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture()
def operator() -> dict[str, str]:
    return {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


@dataclass
class AccountHandle:
    id: int
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture()
def new_account(client: FlaskClient, operator: dict[str, str]):
    """Create accounts through the API: ``new_account("name")`` → AccountHandle."""

    def create(name: str = "Acme") -> AccountHandle:
        response = client.post("/v4/accounts", json={"name": name}, headers=operator)
        assert response.status_code == 201, response.get_json()
        body = response.get_json()
        return AccountHandle(body["id"], body["token"])

    return create


@pytest.fixture()
def account(new_account) -> AccountHandle:
    return new_account("Acme")


@pytest.fixture()
def receiver() -> Iterator[WebhookReceiver]:
    """A Standard Webhooks receiver on 127.0.0.1 (tests/servers/webhook_receiver.py): it verifies
    each delivery with the secrets it is told to trust and can fail on demand."""
    state = WebhookReceiver()
    with serve(create_webhook_receiver(state)) as base_url:
        state.url = base_url + HOOK_PATH
        yield state
