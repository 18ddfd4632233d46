"""``make bench``: throughput, latency, memory and scaling of the service, as ratios to a baseline.

One run, in this order (bench/README.md explains each number):

1. start-up time of ``create_app`` in fresh interpreters, with the shipped catalog and with 1,000
   generated report cards;
2. for PostgreSQL (a database of its own, created and dropped here) and for SQLite (a temp file):
   migrate and seed, start the service and the baseline under gunicorn with the same settings, then
   for each endpoint a warm-up run and a measured run of the load generator; list pagination at
   1k/10k/100k sources; peak RSS of every worker;
3. write ``bench/results/latest.md`` and ``latest.json`` and print the table.

Options are for development; ``make bench`` uses the defaults.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from . import discovery, execute, loadgen, seed, singer, wakeup

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
THREADS_PER_WORKER = 4  # as `make run` (gunicorn gthread workers)

TARGETS = {
    "report_card": ("GET /v4/source-types/{type} ≥ 0.8× baseline (a)", 0.8),
    "source_get": ("GET /v4/sources/{id} ≥ 0.6× baseline (b)", 0.6),
    "source_put": ("PUT /v4/sources/{id} ≥ 0.5× baseline (b)", 0.5),
    "list_scaling": ("list page time at 100k ≤ 1.2× at 1k", 1.2),
    # Added by the bench: a small account's pages must not be slow either (the target above
    # compares accounts of different sizes in one table; see README).
    "list_flat": ("(added) every list page, 1k…100k, first and deepest, ≤ 1.2× the fastest", 1.2),
    "startup": ("create_app with 1,000 cards < 2 s", 2.0),
    "rss": ("peak RSS per worker ≤ 120 MiB", 120.0),
    "proxy": ("proxy call ≥ 0.7× a direct call to the same loopback API (bench/execute.py)", 0.7),
    "wakeup": ("last credential → field_selection < 0.2 s (median, embedded worker, loopback API)", 0.2),
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A gunicorn master (started here, in a session of its own) and its workers."""

    def __init__(self, name: str, app: str, env: dict[str, str], workers: int, logs: Path) -> None:
        self.name, self.port = name, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = logs / f"{name}.log"
        command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}",
                   "--workers", str(workers), "--threads", str(THREADS_PER_WORKER),
                   "--worker-class", "gthread", "--error-logfile", "-", "--log-level", "warning", app]
        self.log_file = open(self.log_path, "w")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}, stdout=self.log_file,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        self.workers = workers

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log_path}:\n"
                                   + self.log_path.read_text()[-3000:])
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                    if response.status == 200 and len(self.worker_pids()) == self.workers:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer /health within {timeout} s; see {self.log_path}")

    def worker_pids(self) -> list[int]:
        try:
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text()
        except OSError:
            return []
        return [int(pid) for pid in children.split()]

    def cpu_seconds(self) -> dict[int, float]:
        ticks = os.sysconf("SC_CLK_TCK")
        result: dict[int, float] = {}
        for pid in self.worker_pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            result[pid] = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
        return result

    def peak_rss_mib(self) -> dict[int, float]:
        """VmHWM (peak resident set) of each worker, in MiB."""
        result: dict[int, float] = {}
        for pid in self.worker_pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    result[pid] = round(int(line.split()[1]) / 1024, 1)
        return result

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.kill(self.process.pid, signal.SIGQUIT)  # gunicorn: quick shutdown
                self.process.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)  # the session this run started
                except ProcessLookupError:
                    pass
                self.process.wait()
        self.log_file.close()


@contextmanager
def running(server: Server):  # type: ignore[no-untyped-def]
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


# --- measurements ------------------------------------------------------------------------------


def http_call(url: str, method: str, path: str, token: str | None, body: dict | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url + path, method=method, headers=headers,
                                     data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class Loader:
    def __init__(self, choice: loadgen.Choice, args: argparse.Namespace) -> None:
        self.choice, self.args = choice, args

    def measure(self, server: Server, mode: str, token: str | None, arg: str, warm_arg: str | None = None) -> dict:
        """A warm-up run (discarded), then the measured run; with each worker's share of the CPU."""
        common = {"duration": self.args.warmup, "connections": self.args.connections,
                  "threads": self.args.wrk_threads, "keep_alive": self.args.keep_alive}
        loadgen.run(self.choice, server.url, mode, token, warm_arg or arg, nonce=secrets.token_hex(4), **common)
        cpu_before = server.cpu_seconds()
        common["duration"] = self.args.duration
        result = loadgen.run(self.choice, server.url, mode, token, arg, nonce=secrets.token_hex(4), **common)
        cpu_after = server.cpu_seconds()
        used = {pid: cpu_after[pid] - cpu_before.get(pid, 0.0) for pid in cpu_after}
        result["worker_cpu_s"] = [round(v, 2) for v in used.values()]
        result["server_cpu_pct"] = round(100 * sum(used.values()) / result["seconds"], 1) if result["seconds"] else 0
        # CPU time of the server's workers per request: what a request costs, whatever else the
        # machine was doing (on a busy machine req/s falls with the CPU the servers get).
        requests = result["requests"]
        result["cpu_us_per_request"] = round(1e6 * sum(used.values()) / requests) if requests else None
        return result


def timed_pages(url: str, pages: list[tuple[str, str, str]], *, warm: int, runs: int) -> dict[str, dict]:
    """Sequential GETs on one keep-alive connection, the pages taken in turn (so drift hits them all
    alike): median and p90 wall time per page. ``pages`` is [(key, path, token)]."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    times: dict[str, list[float]] = {key: [] for key, _, _ in pages}
    items: dict[str, int] = {}
    try:
        for number in range(warm + runs):
            for key, path, token in pages:
                started = time.perf_counter()
                connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
                response = connection.getresponse()
                body = response.read()
                elapsed = time.perf_counter() - started
                if response.status != 200:
                    raise RuntimeError(f"GET {path} answered {response.status}: {body[:300]!r}")
                if number >= warm:
                    times[key].append(elapsed)
                else:
                    items[key] = len(json.loads(body)["data"])
    finally:
        connection.close()
    result = {}
    for key, values in times.items():
        values.sort()
        result[key] = {"median_ms": round(statistics.median(values) * 1000, 2),
                       "p90_ms": round(values[int(0.9 * (len(values) - 1))] * 1000, 2), "items": items[key]}
    return result


def measure_startup(folder: Path, cards: Path | None, repeats: int) -> dict:
    env = {**os.environ, "CONNECT_DATABASE_URL": f"sqlite:///{folder / 'startup.db'}",
           "CONNECT_OPERATOR_TOKEN": "op_startup", "CONNECT_LOG_LEVEL": "WARNING",
           "CONNECT_ENCRYPTION_KEYS": "kstart:" + "A" * 43 + "="}
    if cards is not None:
        env["CONNECT_REPORT_CARDS"] = str(cards)
    else:
        env.pop("CONNECT_REPORT_CARDS", None)
    runs = []
    for _ in range(repeats):
        done = subprocess.run([sys.executable, "-m", "bench.startup"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"bench.startup failed:\n{done.stdout}\n{done.stderr[-3000:]}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    median = {key: round(statistics.median(r[key] for r in runs), 3)
              for key in ("import_s", "create_app_s", "catalog_load_s")}
    return {**median, "source_types": runs[0]["source_types"], "runs": runs}


def ratio(value: float, base: float) -> float | None:
    return round(value / base, 2) if base else None


# --- one backend -------------------------------------------------------------------------------


def check_endpoints(service: Server, baseline: Server, seeded: seed.Seeded) -> None:
    """Every request the load uses answers as it should before it is measured."""
    token = seeded.token
    status, body = http_call(service.url, "GET", f"/v4/source-types/{seed.SOURCE_TYPE}", token)
    assert status == 200 and body == seeded.card_bytes, f"service report card: {status}"
    status, body = http_call(baseline.url, "GET", f"/v4/source-types/{seed.SOURCE_TYPE}", None)
    assert status == 200 and body == seeded.card_bytes, f"baseline report card: {status}"
    status, body = http_call(service.url, "GET", f"/v4/sources/{seeded.get_source_id}", token)
    assert status == 200 and json.loads(body)["id"] == seeded.get_source_id, f"service source: {status}"
    status, body = http_call(baseline.url, "GET", f"/v4/sources/{seeded.get_source_id}", None)
    assert status == 200 and json.loads(body)["id"] == seeded.get_source_id, f"baseline source: {status}"
    status, body = http_call(service.url, "GET", "/v4/sources?limit=50", token)
    assert status == 200 and len(json.loads(body)["data"]) == 50, f"service list: {status}"
    # PUT and POST are checked by the load itself (errors are counted and reported).


def bench_backend(backend: str, url: str, loader: Loader, args: argparse.Namespace, tmp: Path,
                  workers: int) -> dict:
    log(f"{backend}: migrating and seeding")
    seeded = seed.seed(backend, url, scale_sizes=tuple(args.scale))
    log(f"{backend}: seeded ({seeded.seed_seconds})")
    card_file = tmp / f"card-{backend}.json"
    card_file.write_bytes(seeded.card_bytes)
    service_env = {
        "CONNECT_DATABASE_URL": url, "CONNECT_OPERATOR_TOKEN": seeded.operator_token,
        "CONNECT_ENCRYPTION_KEYS": seeded.encryption_keys, "CONNECT_EMBEDDED_WORKER": "0",
        "CONNECT_LOG_LEVEL": "INFO",
    }
    baseline_env = {"BENCH_DATABASE_URL": url, "BENCH_CARD_FILE": str(card_file),
                    "BENCH_CARD_TYPE": seed.SOURCE_TYPE}
    result: dict = {"seed": seeded.seed_seconds, "endpoints": {}, "baseline": {}}
    with ExitStack() as stack:
        service = stack.enter_context(running(Server(f"service-{backend}", "wsgi:app", service_env, workers, tmp)))
        base = stack.enter_context(running(Server(f"baseline-{backend}", "bench.baseline:app", baseline_env,
                                                  workers, tmp)))
        check_endpoints(service, base, seeded)
        token = seeded.token
        half = len(seeded.put_source_ids) // 2
        warm_ids = ",".join(map(str, seeded.put_source_ids[:half]))
        put_ids = ",".join(map(str, seeded.put_source_ids[half:]))
        card_path = f"/v4/source-types/{seed.SOURCE_TYPE}"
        source_path = f"/v4/sources/{seeded.get_source_id}"
        plan = [
            ("baseline", "a", base, "get", None, card_path, None),
            ("service", "report_card", service, "get", token, card_path, None),
            ("baseline", "b", base, "get", None, source_path, None),
            ("service", "source_get", service, "get", token, source_path, None),
            ("service", "source_list", service, "get", token, "/v4/sources?limit=50", None),
            ("service", "source_put", service, "put", token, put_ids, warm_ids),
            ("service", "source_post", service, "post", token, "-", None),
            # The baselines again at the end: each ratio uses the mean of both runs, and the
            # difference between them shows how much the machine drifted.
            ("baseline", "b", base, "get", None, source_path, None),
            ("baseline", "a", base, "get", None, card_path, None),
        ]
        wanted = set(args.endpoints)
        plan = [row for row in plan if row[0] == "baseline" or row[1] in wanted]
        runs: dict[str, list[dict]] = {}
        for kind, name, server, mode, tok, arg, warm_arg in plan:
            measured = loader.measure(server, mode, tok, arg, warm_arg)
            if kind == "baseline":
                runs.setdefault(name, []).append(measured)
            else:
                result["endpoints"][name] = measured
            shares = measured["worker_cpu_s"]
            balance = "" if not shares or min(shares) * 2 >= max(shares) else \
                f" (workers unevenly loaded: CPU s {shares})"
            log(f"{backend}: {kind} {name}: {measured['rps']} req/s, p50 {measured['p50_ms']} ms, "
                f"p99 {measured['p99_ms']} ms, errors {measured['errors']}, "
                f"server CPU {measured['server_cpu_pct']}%, load generator CPU "
                f"{measured['loadgen_cpu_pct_of_one_core']}% of a core{balance}")
        for name, measured_runs in runs.items():
            merged = {key: round(statistics.mean(r[key] for r in measured_runs), 2)
                      for key in ("rps", "p50_ms", "p90_ms", "p99_ms")}
            if all(r.get("cpu_us_per_request") for r in measured_runs):
                merged["cpu_us_per_request"] = round(statistics.mean(r["cpu_us_per_request"] for r in measured_runs))
            merged["errors"] = sum(r["errors"] for r in measured_runs)
            merged["runs"] = measured_runs
            result["baseline"][name] = merged
        # Scaling: sequential requests on a quiet server.
        pages = []
        for account in seeded.scale:
            pages.append((f"{account.size}/first", account.first_page_path, account.token))
            pages.append((f"{account.size}/deepest", account.deepest_page_path, account.token))
        timed = timed_pages(service.url, pages, warm=args.page_warm, runs=args.page_runs) if pages else {}
        scaling = {str(account.size): {"first": timed[f"{account.size}/first"],
                                       "deepest": timed[f"{account.size}/deepest"]} for account in seeded.scale}
        for size, page in scaling.items():
            log(f"{backend}: list at {size}: first {page['first']['median_ms']} ms, "
                f"deepest {page['deepest']['median_ms']} ms")
        result["scaling"] = scaling
        result["rss_mib"] = {"service": list(service.peak_rss_mib().values()),
                             "baseline": list(base.peak_rss_mib().values())}
        log(f"{backend}: peak RSS per worker (MiB): {result['rss_mib']}")
    base_a = result["baseline"]["a"]["rps"]
    base_b = result["baseline"]["b"]["rps"]
    for name, measured in result["endpoints"].items():
        against = "a" if name == "report_card" else "b"
        measured["baseline"] = against
        measured["ratio"] = ratio(measured["rps"], base_a if against == "a" else base_b)
        base_cpu = result["baseline"][against].get("cpu_us_per_request")
        if base_cpu and measured.get("cpu_us_per_request"):
            measured["cpu_ratio"] = ratio(base_cpu, measured["cpu_us_per_request"])
    return result


# --- report ------------------------------------------------------------------------------------

ENDPOINT_LABELS = {
    "report_card": "GET /v4/source-types/{type}",
    "source_get": "GET /v4/sources/{id}",
    "source_put": "PUT /v4/sources/{id}",
    "source_post": "POST /v4/sources",
    "source_list": "GET /v4/sources?limit=50",
}
BASELINE_LABELS = {"a": "(a) card bytes from memory", "b": "(b) one SQLAlchemy query + json"}


def evaluate(report: dict) -> list[dict]:
    """Each target, per backend where it depends on one: the value and whether it is met."""
    verdicts = []
    for backend, result in report["backends"].items():
        for name in ("report_card", "source_get", "source_put"):
            if name not in result["endpoints"]:
                continue
            value = result["endpoints"][name]["ratio"]
            text, threshold = TARGETS[name]
            verdicts.append({"target": text, "backend": backend, "value": value,
                             "met": value is not None and value >= threshold})
        scaling = result["scaling"]
        sizes = sorted(scaling, key=int)
        if len(sizes) >= 2:
            slowest = {size: max(scaling[size]["first"]["median_ms"], scaling[size]["deepest"]["median_ms"])
                       for size in sizes}
            value = round(slowest[sizes[-1]] / slowest[sizes[0]], 2)
            verdicts.append({"target": TARGETS["list_scaling"][0], "backend": backend, "value": value,
                             "detail": f"slowest page at {sizes[-1]} / slowest page at {sizes[0]}",
                             "met": value <= TARGETS["list_scaling"][1]})
            every = [scaling[size][page]["median_ms"] for size in sizes for page in ("first", "deepest")]
            spread = round(max(every) / min(every), 2)
            verdicts.append({"target": TARGETS["list_flat"][0], "backend": backend, "value": spread,
                             "detail": "slowest / fastest of all list pages measured",
                             "met": spread <= TARGETS["list_flat"][1]})
        peak = max(result["rss_mib"]["service"], default=0.0)
        verdicts.append({"target": TARGETS["rss"][0], "backend": backend, "value": peak,
                         "met": peak <= TARGETS["rss"][1]})
    startup = report["startup"]["generated_1000"]["create_app_s"]
    verdicts.append({"target": TARGETS["startup"][0], "backend": "-", "value": startup,
                     "met": startup < TARGETS["startup"][1]})
    if report.get("execute"):
        value = report["execute"]["proxy"]["ratio"]
        verdicts.append({"target": TARGETS["proxy"][0], "backend": "sqlite", "value": value,
                         "met": value >= TARGETS["proxy"][1]})
    for backend, rows in (report.get("wakeup") or {}).items():
        value = rows["woken"]["median_s"]
        verdicts.append({"target": TARGETS["wakeup"][0], "backend": backend, "value": value,
                         "met": value < TARGETS["wakeup"][1]})
    return verdicts


def markdown(report: dict) -> str:
    machine = report["machine"]
    settings = report["settings"]
    lines = [
        "# connect benchmark: latest results",
        "",
        f"- commit `{report['commit']}`, {report['date']}",
        f"- machine: {machine['cores']} cores ({machine['cpu']}), {machine['memory_gib']} GiB, "
        f"Python {machine['python']}, {machine['postgres'] or 'no PostgreSQL'}",
        f"- gunicorn: {settings['workers']} workers (= cores) × {settings['threads']} threads (gthread), "
        f"same for service and baseline",
        f"- load: {report['loadgen']['version']} ({report['loadgen']['kind']}; {report['loadgen']['why']}), "
        f"{settings['connections']} connections (`Connection: {settings['connection']}`), "
        f"{settings['wrk_threads']} generator thread(s), "
        f"{settings['warmup_s']} s warm-up + {settings['duration_s']} s measured per row",
        f"- wall time of this run (`python -m bench.run`, after the venv exists): {report['wall_s']} s",
        "",
        "## Throughput and latency",
        "",
        "| endpoint | db | req/s | p50 ms | p99 ms | errors | baseline | baseline req/s | ratio | target "
        "| CPU µs/req | CPU ratio |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---|---:|---:|",
    ]
    targets = {"report_card": "≥ 0.8", "source_get": "≥ 0.6", "source_put": "≥ 0.5"}
    for backend, result in report["backends"].items():
        for name, label in ENDPOINT_LABELS.items():
            if name not in result["endpoints"]:
                continue
            m = result["endpoints"][name]
            base = result["baseline"][m["baseline"]]
            target = targets.get(name)
            verdict = "" if target is None else (" ✅" if m["ratio"] >= float(target[2:]) else " ❌")
            lines.append(f"| {label} | {backend} | {m['rps']:.0f} | {m['p50_ms']} | {m['p99_ms']} | {m['errors']} | "
                         f"{m['baseline']} | {base['rps']:.0f} | {m['ratio']} | "
                         f"{(target + verdict) if target else '—'} | {m.get('cpu_us_per_request', '—')} | "
                         f"{m.get('cpu_ratio', '—')} |")
        for key, label in BASELINE_LABELS.items():
            b = result["baseline"][key]
            each = " / ".join(f"{r['rps']:.0f}" for r in b["runs"])
            lines.append(f"| baseline {label} | {backend} | {b['rps']:.0f} ({each}) | {b['p50_ms']} | {b['p99_ms']} | "
                         f"{b['errors']} | — | — | — | — | {b.get('cpu_us_per_request', '—')} | — |")
    lines += ["", "Ratios are service req/s ÷ baseline req/s on the same database; a baseline's req/s is the mean "
              "of one run before the service rows and one after (both in brackets). Errors count transport "
              "errors and HTTP statuses ≥ 400. CPU µs/req is the CPU time of the server's gunicorn workers "
              "per request in the measured window; CPU ratio is the baseline's ÷ the row's (what the req/s "
              "ratio would be if the servers were CPU-bound alone on the machine; it is not what the targets "
              "use, but it moves less when other work shares the machine)."]
    lines += ["", "## List pagination (sequential requests on a quiet server, `limit=50`, median of "
              f"{settings['page_runs']})", "",
              "| db | sources in the account | first page ms | deepest page ms | slowest page / slowest at smallest |",
              "|---|---:|---:|---:|---:|"]
    for backend, result in report["backends"].items():
        sizes = sorted(result["scaling"], key=int)
        if not sizes:
            continue
        small = max(result["scaling"][sizes[0]]["first"]["median_ms"],
                    result["scaling"][sizes[0]]["deepest"]["median_ms"])
        for size in sizes:
            page = result["scaling"][size]
            worst = max(page["first"]["median_ms"], page["deepest"]["median_ms"])
            lines.append(f"| {backend} | {int(size):,} | {page['first']['median_ms']} | "
                         f"{page['deepest']['median_ms']} | {round(worst / small, 2)} |")
    lines += ["", "## Start-up (fresh interpreter, median of "
              f"{settings['startup_repeats']})", "",
              "| catalog | source types | import s | create_app s | of which catalog load s |",
              "|---|---:|---:|---:|---:|"]
    for key, label in (("shipped", "shipped report_cards/"), ("generated_1000", "1,000 generated cards")):
        s = report["startup"][key]
        lines.append(f"| {label} | {s['source_types']} | {s['import_s']} | {s['create_app_s']} | "
                     f"{s['catalog_load_s']} |")
    lines += ["", "## Peak RSS per gunicorn worker (VmHWM, MiB, after all load)", "",
              "| db | service workers | baseline workers |", "|---|---|---|"]
    for backend, result in report["backends"].items():
        rss = result["rss_mib"]
        lines.append(f"| {backend} | {', '.join(map(str, rss['service']))} | {', '.join(map(str, rss['baseline']))} |")
    if report.get("discovery"):
        lines += ["", *discovery.markdown(report["discovery"], settings.get("discovery_runs", 3))]
    if report.get("execute"):
        lines += ["", *execute.markdown(report["execute"])]
    if report.get("singer"):
        lines += ["", *singer.markdown(report["singer"])]
    if report.get("wakeup"):
        lines += ["", *wakeup.markdown(report["wakeup"], settings.get("wakeup_runs", 15))]
    lines += ["", "## Targets", "", "| target | db | value | met |", "|---|---|---:|---|"]
    for verdict in report["targets"]:
        lines.append(f"| {verdict['target']} | {verdict['backend']} | {verdict['value']} | "
                     f"{'yes' if verdict['met'] else '**no**'} |")
    if report.get("skipped"):
        lines += ["", "Skipped: " + "; ".join(report["skipped"])]
    lines.append("")
    return "\n".join(lines)


def git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return commit + (" + uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine_info(postgres_version: str | None) -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return {"cores": len(os.sched_getaffinity(0)), "cpu": cpu, "memory_gib": memory,
            "python": platform.python_version(), "platform": platform.platform(), "postgres": postgres_version}


def postgres_version(admin_url: str) -> str | None:
    from sqlalchemy import create_engine, text

    engine = create_engine(admin_url)
    try:
        with engine.connect() as connection:
            return "PostgreSQL " + connection.execute(text("SHOW server_version")).scalar_one()
    finally:
        engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description="connect benchmark (see bench/README.md)")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per row")
    parser.add_argument("--duration", type=int, default=8, help="measured seconds per row")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--keep-alive", action="store_true",
                        help="reuse connections (default: Connection: close on every request; see README)")
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--backends", default="postgresql,sqlite")
    parser.add_argument("--scale", type=int, nargs="*", default=list(seed.SCALE_SIZES))
    parser.add_argument("--endpoints", nargs="+", default=list(ENDPOINT_LABELS), choices=list(ENDPOINT_LABELS),
                        help="rows to measure (development; make bench measures all)")
    parser.add_argument("--page-warm", type=int, default=5)
    parser.add_argument("--page-runs", type=int, default=60)
    parser.add_argument("--startup-repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--discovery-tables", type=int, nargs="*", default=[200, 2000],
                        help="database discovery rows: tables per source database (none: skip)")
    parser.add_argument("--execute-runs", type=int, default=execute.RUNS,
                        help="calls per execute/proxy row (0: skip)")
    parser.add_argument("--singer-seconds", type=float, default=10.0,
                        help="seconds of two workers running tap discoveries (0: skip the Singer rows)")
    parser.add_argument("--wakeup-runs", type=int, default=15,
                        help="runs of last credential → field_selection per database (0: skip)")
    args = parser.parse_args()

    started = time.perf_counter()
    os.chdir(ROOT)
    cores = len(os.sched_getaffinity(0))
    choice = loadgen.choose(args.loadgen)
    log(f"load generator: {choice.version} ({choice.why})")
    skipped: list[str] = []
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    admin_url = seed.postgres_admin_url()
    pg_version = None
    if "postgresql" in backends:
        problem = seed.postgres_available(admin_url)
        if problem:
            backends.remove("postgresql")
            skipped.append(f"PostgreSQL at {admin_url} is not reachable ({problem})")
            log("skipping PostgreSQL: " + skipped[-1])
        else:
            pg_version = postgres_version(admin_url)

    report: dict = {
        "commit": git_commit(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(pg_version),
        "settings": {"workers": cores, "threads": THREADS_PER_WORKER, "connections": args.connections,
                     "wrk_threads": args.wrk_threads, "warmup_s": args.warmup, "duration_s": args.duration,
                     "connection": "keep-alive" if args.keep_alive else "close",
                     "page_runs": args.page_runs, "startup_repeats": args.startup_repeats},
        "loadgen": asdict(choice),
        "backends": {},
        "skipped": skipped,
    }
    with tempfile.TemporaryDirectory(prefix="connect-bench-") as tmp_name:
        tmp = Path(tmp_name)
        log("start-up: shipped catalog")
        report["startup"] = {"shipped": measure_startup(tmp, None, args.startup_repeats)}
        cards = seed.generated_cards(tmp / "generated-cards", 1000)
        log("start-up: 1,000 generated cards")
        report["startup"]["generated_1000"] = measure_startup(tmp, cards, args.startup_repeats)
        log(f"start-up: {report['startup']['shipped']['create_app_s']} s shipped, "
            f"{report['startup']['generated_1000']['create_app_s']} s with 1,000 cards")
        loader = Loader(choice, args)
        for backend in backends:
            if backend == "postgresql":
                database = seed.postgres_database(admin_url)
            elif backend == "sqlite":
                database = seed.sqlite_database(tmp)
            else:
                raise SystemExit(f"unknown backend {backend!r}")
            with database as url:
                report["backends"][backend] = bench_backend(backend, url, loader, args, tmp, cores)
    if args.discovery_tables:
        log(f"database discovery: {args.discovery_tables} tables")
        report["discovery"] = discovery.measure(args.discovery_tables)
        report["settings"]["discovery_runs"] = 3
    if args.execute_runs:
        log(f"execute and the proxy: {args.execute_runs} calls per row")
        report["execute"] = execute.measure(args.execute_runs)
    if args.singer_seconds:
        log(f"Singer discovery through a tap process: {args.singer_seconds} s of two workers")
        report["singer"] = singer.measure(args.singer_seconds, runs=15)
    if args.wakeup_runs:
        log(f"last credential → field_selection: {args.wakeup_runs} runs per database")
        report["wakeup"] = wakeup.measure(backends, args.wakeup_runs, admin_url)
        report["settings"]["wakeup_runs"] = args.wakeup_runs
    report["wall_s"] = round(time.perf_counter() - started, 1)
    report["targets"] = evaluate(report)
    args.output.mkdir(parents=True, exist_ok=True)
    text = markdown(report)
    (args.output / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.output / "latest.md").write_text(text)
    print()
    print(text)
    log(f"wrote {args.output / 'latest.md'} and latest.json in {report['wall_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
