"""Databases for the benchmark: created, migrated, seeded, and dropped again.

Everything that is a *use case* of the service goes through the service itself: the account and its
token are created with ``POST /v4/accounts`` and the sources the load tests touch with
``POST /v4/sources``, both through Flask's test client on an app built by ``create_app`` (so the
real routes, rules, encryption and events run). Only the large lists of the scaling test (1k, 10k
and 100k sources) are bulk-inserted as ``Source`` rows through SQLAlchemy, copying the shape of a
row the service made.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.engine import make_url

SOURCE_TYPE = "platform.google-analytics"
DEFAULT_POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SCALE_SIZES = (1_000, 10_000, 100_000)
PAGE = 50
# Sources of the load-test account, made through the API; PUT cycles over the first PUT_SOURCES.
API_SOURCES = 200
PUT_SOURCES = 100
# What a seeded source looks like: half way through its set-up (form done, OAuth client given).
SEED_PROPERTIES = {
    "start_date": "2024-01-01T00:00:00Z",
    "frequency_in_minutes": "60",
    "view_id": "123456789",
    "client_id": "bench-client-id.apps.example.com",
    "client_secret": "bench-client-secret-value",
}


@dataclass
class ScaleAccount:
    size: int
    account_id: int
    token: str
    first_page_path: str
    deepest_page_path: str


@dataclass
class Seeded:
    backend: str  # "postgresql" | "sqlite"
    url: str  # what the service and the baseline connect to
    operator_token: str
    encryption_keys: str
    account_id: int
    token: str
    source_ids: list[int]  # made through the API, oldest first
    get_source_id: int
    put_source_ids: list[int]
    card_bytes: bytes  # GET /v4/source-types/platform.google-analytics, exactly
    scale: list[ScaleAccount] = field(default_factory=list)
    seed_seconds: dict[str, float] = field(default_factory=dict)


def postgres_admin_url() -> str:
    return (os.environ.get("CONNECT_BENCH_POSTGRES_URL")
            or os.environ.get("CONNECT_TEST_POSTGRES_URL")
            or DEFAULT_POSTGRES_ADMIN_URL)


def postgres_available(admin_url: str) -> str | None:
    """None when the server answers, else why not."""
    try:
        engine = create_engine(admin_url, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as error:  # any failure means: skip PostgreSQL, and say why
        return f"{type(error).__name__}: {str(error).splitlines()[0]}"
    return None


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A database of its own for this run (CREATE DATABASE … / DROP DATABASE … WITH (FORCE))."""
    name = f"connect_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def sqlite_database(folder: Path) -> Iterator[str]:
    path = folder / "bench.db"
    try:
        yield f"sqlite:///{path}"
    finally:
        for suffix in ("", "-wal", "-shm", "-writelock"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def _check(response, status: int, what: str) -> dict:  # type: ignore[no-untyped-def]
    if response.status_code != status:
        raise RuntimeError(f"seeding: {what} answered {response.status_code}: {response.get_data(as_text=True)[:500]}")
    return response.get_json()


def seed(backend: str, url: str, *, scale_sizes: tuple[int, ...] = SCALE_SIZES) -> Seeded:
    """Migrate the database at ``url`` and fill it through the service; see the module docstring."""
    import time

    from app import create_app
    from app.crypto import generate_key_spec
    from app.db import get_db
    from app.migrations import upgrade
    from app.models import Source, load_all_models
    from app.sources.queries import encode_cursor

    load_all_models()
    timings: dict[str, float] = {}
    started = time.perf_counter()
    engine = create_engine(url)
    upgrade(engine)
    engine.dispose()
    timings["migrate_s"] = time.perf_counter() - started

    operator_token = "op_bench_" + secrets.token_urlsafe(24)
    keys = generate_key_spec()
    app = create_app({"DATABASE_URL": url, "OPERATOR_TOKEN": operator_token, "ENCRYPTION_KEYS": keys,
                      "LOG_LEVEL": "WARNING"})
    client = app.test_client()
    operator = {"Authorization": f"Bearer {operator_token}"}

    started = time.perf_counter()
    account = _check(client.post("/v4/accounts", json={"name": "bench"}, headers=operator), 201,
                     "POST /v4/accounts")
    headers = {"Authorization": f"Bearer {account['token']}"}
    card_response = client.get(f"/v4/source-types/{SOURCE_TYPE}", headers=headers)
    _check(card_response, 200, f"GET /v4/source-types/{SOURCE_TYPE}")
    card_bytes = card_response.get_data()

    source_ids: list[int] = []
    for number in range(API_SOURCES):
        body = {"type": SOURCE_TYPE, "display_name": f"Seeded GA {number:04d}",
                "properties": SEED_PROPERTIES}
        created = _check(client.post("/v4/sources", json=body, headers=headers), 201, "POST /v4/sources")
        source_ids.append(created["id"])
    template = _check(client.get(f"/v4/sources/{source_ids[0]}", headers=headers), 200,
                      "GET /v4/sources/{id}")
    timings["api_seed_s"] = time.perf_counter() - started

    # The scaling accounts: made through the API, their sources bulk-inserted in one transaction
    # each, copying the plain properties of a source the service made (credentials stay out: the
    # list shows no credential values, and every size is seeded alike).
    started = time.perf_counter()
    scale: list[ScaleAccount] = []
    database = get_db(app)
    for size in scale_sizes:
        made = _check(client.post("/v4/accounts", json={"name": f"bench-{size}"}, headers=operator), 201,
                      "POST /v4/accounts")
        properties = dict(template["properties"])
        properties["quota_user"] = f"connect-{made['id']}"
        base_time = datetime.now(UTC) - timedelta(days=30)
        rows = [
            {"account_id": made["id"], "type": SOURCE_TYPE, "name": f"bulk_{number:06d}",
             "display_name": f"Bulk GA {number:06d}", "properties": properties, "version": 1,
             "config_generation": 1, "created_at": base_time + timedelta(seconds=number),
             "updated_at": base_time + timedelta(seconds=number)}
            for number in range(size)
        ]
        with database.engine.begin() as connection:
            for start in range(0, size, 10_000):
                connection.execute(insert(Source), rows[start:start + 10_000])
            ids = list(connection.scalars(
                select(Source.id).where(Source.account_id == made["id"]).order_by(Source.id)))
        assert len(ids) == size
        # The deepest page, newest first: the oldest PAGE rows, reached with the cursor the
        # service hands out on the page before it (the id of that page's last row).
        deepest_cursor = encode_cursor(ids[PAGE]) if size > PAGE else None
        deepest = f"/v4/sources?limit={PAGE}" + (f"&cursor={deepest_cursor}" if deepest_cursor else "")
        scale.append(ScaleAccount(size, made["id"], made["token"], f"/v4/sources?limit={PAGE}", deepest))
    with database.engine.begin() as connection:
        # What autovacuum would have done by the time a table holds this many rows.
        connection.execute(text("ANALYZE"))
    timings["bulk_seed_s"] = time.perf_counter() - started

    # Every scaling page answers with a full page, and the deepest one is the last.
    for account_seed in scale:
        auth = {"Authorization": f"Bearer {account_seed.token}"}
        deepest_body = _check(client.get(account_seed.deepest_page_path, headers=auth), 200, "list deepest")
        if len(deepest_body["data"]) != PAGE or deepest_body["next_cursor"] is not None:
            raise RuntimeError(f"seeding: the deepest page of {account_seed.size} is not the last full page")

    database.dispose()
    return Seeded(
        backend=backend, url=url, operator_token=operator_token, encryption_keys=keys,
        account_id=account["id"], token=account["token"], source_ids=source_ids,
        get_source_id=source_ids[-1], put_source_ids=source_ids[:PUT_SOURCES], card_bytes=card_bytes,
        scale=scale, seed_seconds={k: round(v, 2) for k, v in timings.items()},
    )


def generated_cards(folder: Path, count: int = 1000) -> Path:
    """``count`` report cards: copies of the shipped ones, each with a new type name."""
    from app.config import DEFAULT_REPORT_CARDS

    shipped = sorted(DEFAULT_REPORT_CARDS.glob("*.json"))
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for number in range(count):
        document = json.loads(shipped[number % len(shipped)].read_text())
        document["type"] = f"bench.generated-{number:04d}"
        document["display_name"] = f"{document['display_name']} (copy {number})"
        # Aliases are unique across the catalog: each copy gets its own (so loading checks as many).
        document["aliases"] = [f"{alias}-copy-{number}" for alias in document.get("aliases") or ()]
        (folder / f"bench.generated-{number:04d}.json").write_text(json.dumps(document, indent=2))
    return folder
