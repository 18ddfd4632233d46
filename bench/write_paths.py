"""Core statements vs the ORM unit of work for the same source update (a property, the display name
and its event), in one process: what the comment of app/sources/writes.py:_write_source_rows gives.

    .venv/bin/python -m bench.write_paths sqlite:////tmp/write_paths.db
    .venv/bin/python -m bench.write_paths 'postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3Dwrite_paths'

The database is migrated and gets one account and one source (the PostgreSQL schema must exist).
"""
import statistics
import sys
import time

from sqlalchemy import create_engine, select
from sqlalchemy.orm import selectinload

from app import create_app, db
from app.catalog import get_catalog
from app.crypto import generate_key_spec, get_keyring
from app.migrations import upgrade
from app.models import Source, SourceEvent, utcnow
from app.sources import writes
from app.wiring import services


def main() -> None:
    url = sys.argv[1]
    engine = create_engine(url)
    upgrade(engine)
    engine.dispose()
    app = create_app({"DATABASE_URL": url, "ENCRYPTION_KEYS": generate_key_spec(), "OPERATOR_TOKEN": "op_x",
                      "LOG_LEVEL": "WARNING"})
    client = app.test_client()
    op = {"Authorization": "Bearer op_x"}
    acct = client.post("/v4/accounts", json={"name": "bench"}, headers=op).get_json()
    h = {"Authorization": f"Bearer {acct['token']}"}
    src = client.post("/v4/sources", headers=h, json={"type": "platform.hubspot", "display_name": f"b{time.time()}",
          "properties": {"start_date": "2020-01-01T00:00:00Z"}}).get_json()
    sid, aid = src["id"], acct["id"]
    Session = db.get_db(app).Session

    def core(i):
        with app.app_context(), Session() as s:
            writes.update_source(s, get_catalog(), get_keyring(), services(app).source_hooks, aid, sid,
                                 writes.SourceChange(display_name=f"core {i}",
                                                     properties={"start_date": f"2020-01-{i % 28 + 1:02d}T00:00:00Z"}))

    def orm(i):
        with app.app_context(), Session() as s, db.begin_write(s):
            source = s.scalars(select(Source).options(selectinload(Source.credentials)).where(
                Source.id == sid, Source.account_id == aid, Source.deleted_at.is_(None)).with_for_update()).one()
            source.display_name = f"orm {i}"
            source.properties = {**source.properties, "start_date": f"2020-02-{i % 28 + 1:02d}T00:00:00Z"}
            source.config_generation += 1
            source.version += 1
            source.updated_at = utcnow()
            s.add(SourceEvent(source_id=sid, type="properties_updated", detail={"names": []}))

    results = {"core": [], "orm": []}
    for _round in range(6):
        for name, fn in (("core", core), ("orm", orm)):
            n = 150
            t = time.perf_counter()
            for i in range(n):
                fn(i)
            results[name].append((time.perf_counter() - t) / n * 1e6)
    print(url.split(":")[0], {k: f"{min(v):.0f} µs (median {statistics.median(v):.0f})" for k, v in results.items()})


if __name__ == "__main__":
    main()
