"""The Singer connector's overhead: one discovery through a tap process, and discoveries per minute.

``python -m bench.singer [--seconds 20] [--runs 15]`` installs the test suite's fake tap
(tests/taps/fake_tap, standard library only) with the operator's code path into a temp folder,
then measures through :class:`SingerConnector` (config file, sandboxed process, catalog parsed):

* ``discovery_ms``: one check + discover (one tap process) from start-up to parsed catalog, median
  and p90 of ``--runs``, with the memory limit on (the ``RLIMIT_AS`` trampoline) and off;
* ``python_start_ms``: a bare ``python -I -c pass`` in the same way, the floor any Python tap pays;
* ``per_minute``: discoveries two worker threads finish per minute, each running check + discover
  back to back for ``--seconds``.

A real tap adds its own import time on top (Singer SDK taps take about a second to import). The
function :func:`measure` returns the figures as a dict, for bench/run.py to include.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.catalog.cards import ReportCard  # noqa: E402
from app.catalog.singer_section import parse_spec  # noqa: E402
from app.connectors.base import SourceTarget  # noqa: E402
from app.connectors.singer.connector import SingerConnector  # noqa: E402
from app.connectors.singer.environments import TapEnvironments  # noqa: E402
from app.connectors.singer.runner import RunLimits  # noqa: E402

FAKE_TAP = ROOT / "tests" / "taps" / "fake_tap"
BENCH_TYPE = "bench.singer-fake"


def _card() -> ReportCard:
    prop = {"name": "password", "is_required": True, "is_credential": True, "system_provided": False,
            "property_type": "user_provided", "json_schema": {"type": "string"}, "tap_mutable": False}
    return ReportCard({
        "type": BENCH_TYPE, "display_name": "bench", "connector": "singer",
        "steps": [{"type": "form", "properties": [prop]}, {"type": "discover_schema", "properties": []},
                  {"type": "field_selection", "properties": []}, {"type": "fully_configured", "properties": []}],
        "singer": {"requirement": f"tap-fake @ {FAKE_TAP.as_uri()}", "executable": "tap-fake",
                   "capabilities": ["discover"]}}, "<bench>")


def _discover_once(connector: SingerConnector, card: ReportCard, source_id: int) -> float:
    target = SourceTarget(source_id, 1, "bench", 1, card, {"password": "bench-password"})
    started = time.perf_counter()
    connector.check(target)
    connector.discover(target)
    return (time.perf_counter() - started) * 1000


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"median": round(statistics.median(ordered), 1),
            "p90": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))], 1)}


def _python_start_ms(runs: int) -> dict[str, float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-I", "-c", "pass"], check=True)
        samples.append((time.perf_counter() - started) * 1000)
    return _summary(samples)


def _per_minute(connector: SingerConnector, card: ReportCard, seconds: float, workers: int = 2) -> float:
    done = [0] * workers
    stop_at = time.monotonic() + seconds

    def work(index: int) -> None:
        source_id = index * 1_000_000
        while time.monotonic() < stop_at:
            source_id += 1
            _discover_once(connector, card, source_id)
            done[index] += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return round(sum(done) * 60 / (time.monotonic() - started), 1)


def measure(seconds: float = 20.0, runs: int = 15) -> dict[str, Any]:
    card = _card()
    with tempfile.TemporaryDirectory(prefix="connect-bench-taps-") as folder:
        environments = TapEnvironments(folder)
        environments.install(BENCH_TYPE, parse_spec(card.singer))
        limited = SingerConnector(environments, RunLimits(timeout=60))
        unlimited = SingerConnector(environments, RunLimits(timeout=60, max_memory_bytes=None))
        _discover_once(limited, card, 1)  # warm the page cache
        return {
            "discovery_ms": _summary([_discover_once(limited, card, 10 + i) for i in range(runs)]),
            "discovery_no_memory_limit_ms": _summary([_discover_once(unlimited, card, 100 + i) for i in range(runs)]),
            "python_start_ms": _python_start_ms(runs),
            "per_minute_two_workers": _per_minute(limited, card, seconds),
            "seconds": seconds, "runs": runs,
        }


def markdown(figures: dict[str, Any]) -> list[str]:
    """The rows ``make bench`` prints (bench/run.py)."""
    discovery, bare = figures["discovery_ms"], figures["python_start_ms"]
    unlimited = figures["discovery_no_memory_limit_ms"]
    return [
        "## Singer: one discovery through a tap process (the test tap, start-up to catalog)", "",
        "| row | median ms | p90 ms |", "|---|---:|---:|",
        f"| discovery, sandboxed (memory limit, private config dir) | {discovery['median']} | {discovery['p90']} |",
        f"| discovery, no memory limit | {unlimited['median']} | {unlimited['p90']} |",
        f"| bare `python -c pass` (the floor any tap pays) | {bare['median']} | {bare['p90']} |",
        "", f"Two workers finish **{figures['per_minute_two_workers']} discoveries per minute** "
            f"({figures['seconds']} s measured).",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    figures = measure(args.seconds, args.runs)
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
