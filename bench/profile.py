"""Where the time goes: sample the service's gunicorn workers with py-spy while wrk loads one endpoint.

Not part of ``make bench`` (which only measures). Needs py-spy in the venv and ptrace rights:

    .venv/bin/pip install py-spy
    .venv/bin/python -m bench.profile --backend sqlite --endpoints report_card source_get

For each endpoint it seeds a fresh database as ``make bench`` does, starts the service under gunicorn
with the same settings, runs wrk (warm-up, then the measured window) and, during the measured window,
``py-spy record --gil --nonblocking`` on every worker. It prints where the samples holding the GIL
fall, by area of the code and then by function (inclusive and self share), and writes the same to
``bench/results/profiles/<backend>-<endpoint>.txt``; ``--stacks DIR`` keeps the collapsed stacks
(flamegraph input) too. The numbers are CPU (GIL) time only: time spent waiting for the database
does not show, so read them with the request counts of the bench.
"""

from __future__ import annotations

import argparse
import collections
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from . import loadgen, seed
from .run import RESULTS, Server, running

ENDPOINTS = ("report_card", "source_get", "source_put", "source_post", "source_list")
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


def short(frame: str) -> str:
    match = FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['func']} ({path})"


# Where a sample's time goes: the first of these found walking the stack from its leaf up names
# the bucket (so SQL run by the token lookup counts as "auth", not as "ORM").
BUCKETS = [
    ("_SelectInLoader", "ORM: selectin load of a relationship"),
    ("resolve_principal", "auth: token (per-process cache, else one query)"),
    ("authenticate_request", "auth: other"),
    ("_finish_request", "logging: access line (JSON line + redaction)"),
    ("_start_request", "logging: request id"),
    ("check_request_line", "request checks: NUL in path/query/headers"),
    ("check_request_body", "request checks: JSON body"),
    ("_with_selected_streams", "facts: streams query"),
    ("facts_for", "facts: other"),
    ("source_json", "presenter: source JSON (report card cached per card and facts)"),
    ("source_body", "presenter: source body + report card"),
    ("jsonify", "JSON encoding (flask.jsonify)"),
    ("check_properties", "rules: property checks (jsonschema)"),
    ("merge_properties", "service: apply properties (+ seal credentials)"),
    ("record_event", "service: audit event (one INSERT)"),
    ("_write_source_rows", "service: write the source's columns and credentials (statements)"),
    ("_system_values", "service: system values (templates)"),
    ("read_source", "read: the source and its credential names (one Core query)"),
    ("live_view", "service: read (and lock) the source row + credential names (Core)"),
    ("list_sources", "list: page + credential names (two Core queries)"),
    ("_WriteLock", "SQLite: writers taking turns"),
    ("TransactionalContext.__exit__", "ORM: commit / flush"),
    ("begin_write", "ORM: begin (write)"),
    ("create_source", "service: create (other)"),
    ("update_source", "service: update (other)"),
    ("source_response", "routes: source_response (other)"),
    ("Parser.parse", "webargs/marshmallow: parse body or query"),
    ("_close_request_session", "ORM: session close"),
    ("Flask.wsgi_app", "Flask/werkzeug/flask-smorest (the rest)"),
    ("handle_request", "gunicorn: HTTP parse and write"),
]


def bucket_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for marker, name in BUCKETS:
            if frame.startswith(marker + " ") or f".{marker} " in frame or frame.startswith(marker + "."):
                return name
    return "gunicorn: accept, poll, threads"


def summarise(collapsed: list[Path], top: int) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    buckets: collections.Counter[str] = collections.Counter()
    total = 0
    for path in collapsed:
        for line in path.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue  # a frame name with a line break in it; rare, and skipped
            count = int(count_text)
            frames = [short(f) for f in stack.split(";")]
            # Drop the thread name py-spy puts first.
            frames = [f for f in frames if not f.startswith("thread (")]
            total += count
            for frame in set(frames):
                inclusive[frame] += count
            if frames:
                own[frames[-1]] += count
            buckets[bucket_of(frames)] += count
    lines = [f"{total} samples holding the GIL", "", "share %  where (first match from the leaf up)"]
    for name, count in buckets.most_common():
        lines.append(f"{100 * count / total:7.1f}  {name}")
    lines += ["", "inclusive %  self %  function"]
    for frame, count in inclusive.most_common(top):
        lines.append(f"{100 * count / total:10.1f}  {100 * own[frame] / total:6.1f}  {frame}")
    lines += ["", "top self time:", "self %  function"]
    for frame, count in own.most_common(top):
        lines.append(f"{100 * count / total:6.1f}  {frame}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--endpoints", nargs="+", choices=ENDPOINTS, default=list(ENDPOINTS))
    parser.add_argument("--duration", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--rate", type=int, default=250)
    parser.add_argument("--stacks", type=Path, help="keep the collapsed stacks in this folder")
    parser.add_argument("--output", type=Path, default=RESULTS / "profiles",
                        help="folder for <backend>-<endpoint>.txt (default: bench/results/profiles)")
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy")
    choice = loadgen.choose("wrk")
    with tempfile.TemporaryDirectory(prefix="connect-profile-") as tmp_name:
        tmp = Path(tmp_name)
        database = (seed.postgres_database(seed.postgres_admin_url()) if args.backend == "postgresql"
                    else seed.sqlite_database(tmp))
        with database as url:
            seeded = seed.seed(args.backend, url, scale_sizes=())
            env = {"CONNECT_DATABASE_URL": url, "CONNECT_OPERATOR_TOKEN": seeded.operator_token,
                   "CONNECT_ENCRYPTION_KEYS": seeded.encryption_keys, "CONNECT_EMBEDDED_WORKER": "0",
                   "CONNECT_LOG_LEVEL": "INFO"}
            half = len(seeded.put_source_ids) // 2
            requests = {
                "report_card": ("get", f"/v4/source-types/{seed.SOURCE_TYPE}"),
                "source_get": ("get", f"/v4/sources/{seeded.get_source_id}"),
                "source_list": ("get", "/v4/sources?limit=50"),
                "source_put": ("put", ",".join(map(str, seeded.put_source_ids[half:]))),
                "source_post": ("post", "-"),
            }
            import os

            cores = len(os.sched_getaffinity(0))
            with running(Server(f"profile-{args.backend}", "wsgi:app", env, cores, tmp)) as service:
                for endpoint in args.endpoints:
                    mode, arg = requests[endpoint]
                    outcome: dict = {}

                    def load(mode: str = mode, arg: str = arg, outcome: dict = outcome) -> None:
                        outcome.update(loadgen.run(choice, service.url, mode, seeded.token, arg,
                                                   duration=args.warmup + args.duration + 1,
                                                   connections=args.connections, nonce=secrets.token_hex(4)))

                    thread = threading.Thread(target=load)
                    thread.start()
                    threading.Event().wait(args.warmup)
                    outputs = []
                    spies = []
                    for pid in service.worker_pids():
                        out = tmp / f"{endpoint}-{pid}.txt"
                        outputs.append(out)
                        spies.append(subprocess.Popen(
                            [py_spy, "record", "--pid", str(pid), "--duration", str(args.duration), "--rate",
                             str(args.rate), "--gil", "--nonblocking", "--format", "raw", "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                    for spy in spies:
                        spy.wait()
                    thread.join()
                    text = (f"# {endpoint} on {args.backend}: {outcome.get('rps')} req/s under profiling "
                            f"(errors {outcome.get('errors')})\n\n" + summarise(outputs, args.top))
                    folder = args.output
                    folder.mkdir(parents=True, exist_ok=True)
                    target = folder / f"{args.backend}-{endpoint}.txt"
                    target.write_text(text + "\n")
                    if args.stacks:
                        args.stacks.mkdir(parents=True, exist_ok=True)
                        stacks = args.stacks / f"{args.backend}-{endpoint}.collapsed"
                        stacks.write_text("".join(p.read_text() for p in outputs if p.exists()))
                    print(text, flush=True)
                    print(f"\n(wrote {target})\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
