"""Execute and the proxy, measured over real HTTP on this machine: the service under gunicorn (one
gthread worker, as bench/run.py starts it) and the suite's loopback data API
(tests/servers/data_api.py) served by a threaded werkzeug server in this process, called one
request at a time.

* proxy overhead: ``GET /v4/sources/{id}/proxy/echo/allowed/x`` (a bearer source) against the
  same ``GET <data API>/bearer/echo/allowed/x`` called directly with the token, median latency of
  :data:`RUNS` calls each; the ratio is direct ÷ proxy (the proxy's throughput as a fraction of a
  direct call's, target ≥ 0.7×). Beside it, for scale, the service's cheapest answer (``GET
  /health``: gunicorn, Flask and one ``SELECT 1``), a floor under any call through the service, and
  the same pair with the data API taking :data:`PROVIDER_SECONDS` per answer, as a provider's API
  does (the loopback one answers in about 2 ms, which no hop through a Python service can be a
  small part of; see bench/README.md).
* execute ``list`` of 100 records: from the data API (one page of 100, cursor pagination) and from
  a PostgreSQL table of 1,000 rows (keyset page of 100, selected columns), median latency.

``python -m bench.execute`` prints the table alone; ``make bench`` includes it in
bench/results/latest.md.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import requests
from sqlalchemy import create_engine

RUNS = 300
PROVIDER_SECONDS = 0.02
PG: dict[str, Any] = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
ROOT = Path(__file__).resolve().parent.parent


def _median_ms(call: Callable[[], requests.Response], runs: int) -> float:
    for _ in range(20):
        call()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        response = call()
        times.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise RuntimeError(f"bench call answered {response.status_code}: {response.text[:300]}")
    return round(statistics.median(times) * 1000, 3)


@contextmanager
def _service(folder: Path) -> Iterator[tuple[Any, str]]:
    """The service under gunicorn, and an app in this process on the same database and keys (it
    runs the check jobs)."""
    from app import create_app
    from app.crypto import generate_key_spec
    from app.db import get_db
    from app.migrations import upgrade
    from app.models import load_all_models

    from .run import Server, running

    load_all_models()
    url = f"sqlite:///{folder / 'execute.db'}"
    engine = create_engine(url)
    upgrade(engine)
    engine.dispose()
    settings = {"DATABASE_URL": url, "OPERATOR_TOKEN": "bench-operator", "ENCRYPTION_KEYS": generate_key_spec(),
                "REPORT_CARDS": f"{ROOT / 'report_cards'}:{ROOT / 'tests' / 'report_cards'}",
                "ALLOWED_SOURCE_NETWORKS": "127.0.0.0/8", "LOG_LEVEL": "WARNING", "EMBEDDED_WORKER": "0"}
    app = create_app({**settings, "EMBEDDED_WORKER": False})
    try:
        with running(Server("execute-service", "wsgi:app", {f"CONNECT_{k}": v for k, v in settings.items()}, 1,
                            folder)) as service:
            yield app, service.url
    finally:
        get_db(app).dispose()


@contextmanager
def _pg_table(rows: int) -> Iterator[dict[str, str]]:
    name = f"bench_execute_{secrets.token_hex(3)}"
    with psycopg.connect(**PG, dbname="test", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(**PG, dbname=name, autocommit=True) as connection:
            connection.execute("CREATE TABLE public.items (id bigint PRIMARY KEY, name text, price numeric(10,2), "
                               "created_at timestamptz DEFAULT now(), note text)")
            connection.execute(f"INSERT INTO public.items (id, name, price, note) SELECT g, 'item ' || g, g * 1.5, "
                               f"'note' FROM generate_series(1, {rows}) g")
        yield {"host": "127.0.0.1", "port": "5432", "dbname": name, "user": "postgres", "password": "unused"}
    finally:
        with psycopg.connect(**PG, dbname="test", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _configured(app: Any, http: requests.Session, base: str, token: str, source_type: str,
                properties: dict[str, str], stream: str) -> int:
    from app.jobs.worker import Worker
    from app.wiring import services

    headers = {"Authorization": f"Bearer {token}"}
    created = http.post(f"{base}/v4/sources", headers=headers, json={
        "type": source_type, "display_name": f"bench {secrets.token_hex(3)}", "properties": properties})
    source_id = created.json()["id"]
    worker = Worker(app, services(app).jobs, poll_interval=0.05)
    while worker.run_once():
        pass
    selected = http.put(f"{base}/v4/sources/{source_id}/streams/metadata", headers=headers, json={"streams": [
        {"tap_stream_id": stream, "metadata": [{"breadcrumb": [], "metadata": {"selected": True}}]}]})
    if selected.status_code != 200:
        raise RuntimeError(f"bench: selecting {stream} answered {selected.status_code}: {selected.text[:300]}")
    return int(source_id)


def measure(runs: int = RUNS) -> dict[str, Any]:
    from tests.servers import create_data_api, get_data_api, serve

    data_api_app = create_data_api()
    data_api = get_data_api(data_api_app)
    data_api.settings.bearer_token = "bench-" + secrets.token_hex(16)
    results: dict[str, Any] = {"runs": runs}
    with tempfile.TemporaryDirectory(prefix="connect-bench-execute-") as folder, \
            serve(data_api_app) as api_url, _service(Path(folder)) as (app, base), requests.Session() as http:
        account = http.post(f"{base}/v4/accounts", headers={"Authorization": "Bearer bench-operator"},
                            json={"name": "bench"}).json()
        token = account["token"]
        headers = {"Authorization": f"Bearer {token}"}
        source_id = _configured(app, http, base, token, "test.execute-bearer",
                                {"api_url": api_url, "api_token": data_api.settings.bearer_token}, "items_cursor")
        direct_headers = {"Authorization": f"Bearer {data_api.settings.bearer_token}"}
        direct = _median_ms(lambda: http.get(f"{api_url}/bearer/echo/allowed/x", headers=direct_headers), runs)
        proxied = _median_ms(lambda: http.get(f"{base}/v4/sources/{source_id}/proxy/echo/allowed/x",
                                              headers=headers), runs)
        results["proxy"] = {"direct_ms": direct, "proxy_ms": proxied, "ratio": round(direct / proxied, 2)}
        results["health_ms"] = _median_ms(lambda: http.get(f"{base}/health"), runs)
        data_api.fail_next_requests("slow", None, delay=PROVIDER_SECONDS, path_prefix="/bearer/echo")
        slow_direct = _median_ms(lambda: http.get(f"{api_url}/bearer/echo/allowed/x", headers=direct_headers),
                                 runs // 3)
        slow_proxied = _median_ms(lambda: http.get(f"{base}/v4/sources/{source_id}/proxy/echo/allowed/x",
                                                   headers=headers), runs // 3)
        data_api.clear_faults()
        results["proxy_provider_latency"] = {"delay_ms": PROVIDER_SECONDS * 1000, "direct_ms": slow_direct,
                                             "proxy_ms": slow_proxied, "ratio": round(slow_direct / slow_proxied, 2)}
        results["source_get_ms"] = _median_ms(lambda: http.get(f"{base}/v4/sources/{source_id}", headers=headers),
                                              runs)
        body = {"entity": "items_cursor", "action": "list", "params": {"limit": 100}}
        results["execute_http_ms"] = _median_ms(
            lambda: http.post(f"{base}/v4/sources/{source_id}/execute", headers=headers, json=body), runs // 3)
        try:
            with _pg_table(1000) as properties:
                pg_id = _configured(app, http, base, token, "platform.hp-postgres", properties,
                                    f"{properties['dbname']}-public-items")
                pg_body = {"entity": f"{properties['dbname']}-public-items", "action": "list", "params": {"limit": 100}}
                first = http.post(f"{base}/v4/sources/{pg_id}/execute", headers=headers, json=pg_body).json()
                cursor = first["connector_metadata"]["pagination"]["cursor"]
                deep = {**pg_body, "params": {"limit": 100, "cursor": cursor}}
                results["execute_pg_ms"] = _median_ms(
                    lambda: http.post(f"{base}/v4/sources/{pg_id}/execute", headers=headers, json=pg_body), runs // 3)
                results["execute_pg_second_page_ms"] = _median_ms(
                    lambda: http.post(f"{base}/v4/sources/{pg_id}/execute", headers=headers, json=deep), runs // 3)
        except psycopg.OperationalError as error:
            results["execute_pg_skipped"] = str(error)[:200]
    return results


def markdown(results: dict[str, Any]) -> list[str]:
    proxy = results["proxy"]
    lines = [f"## Execute and the proxy (gunicorn, one request at a time, median of {results['runs']})", "",
             "| row | median ms | ratio | target |", "|---|---:|---:|---|",
             f"| direct GET to the loopback data API | {proxy['direct_ms']} | | |",
             f"| the same GET through /v4/sources/{{id}}/proxy | {proxy['proxy_ms']} | {proxy['ratio']}× | "
             f"≥ 0.7× ({'met' if proxy['ratio'] >= 0.7 else '**not met**'}) |",
             f"| the proxy's own cost (proxy − direct) | {round(proxy['proxy_ms'] - proxy['direct_ms'], 3)} | | |",
             f"| for scale: GET /health of the service (its floor) | {results['health_ms']} | | |",
             f"| for scale: GET /v4/sources/{{id}} of the service | {results['source_get_ms']} | | |"]
    slow = results.get("proxy_provider_latency")
    if slow:
        lines += [f"| direct GET, the data API taking {slow['delay_ms']:g} ms as a provider does | {slow['direct_ms']} "
                  "| | |",
                  f"| the same through the proxy | {slow['proxy_ms']} | {slow['ratio']}× | ≥ 0.7× "
                  f"({'met' if slow['ratio'] >= 0.7 else '**not met**'}) |"]
    lines.append(f"| execute list of 100 records, http source (cursor) | {results['execute_http_ms']} | | |")
    if "execute_pg_ms" in results:
        lines += [f"| execute list of 100 records, PostgreSQL table of 1,000 | {results['execute_pg_ms']} | | |",
                  f"| the same, second page (keyset cursor) | {results['execute_pg_second_page_ms']} | | |"]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=RUNS)
    args = parser.parse_args()
    print("\n".join(markdown(measure(args.runs))))


if __name__ == "__main__":
    main()
