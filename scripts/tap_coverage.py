#!/usr/bin/env python3
"""Install every declared Singer tap and report which install and start here.

For each report card with a ``singer`` section this installs the tap into a scratch directory with
the code ``flask connect taps install`` uses (app/connectors/singer/environments.py: one virtual
environment per type, made by uv), then starts it through the tap runner (the sandbox the service
uses: private directory, minimal environment, time and memory limits) with ``--about --format=json``
(Singer SDK taps answer it) and, failing that, ``--help`` (every singer-python tap parses its
arguments with argparse). A tap counts when it installed and started on this Python.

Writes ``docs/tap-coverage.json`` (read by scripts/build_report_cards.py to mark the sections whose
tap cannot install or start here) and ``docs/tap-coverage.md`` (the table for people).

Usage: ``python scripts/tap_coverage.py [--jobs 2] [--dir SCRATCH] [--keep] [TYPE …]``. uv's cache
(``~/.cache/uv`` or ``UV_CACHE_DIR``) makes a second run fast. Environments are deleted after their
check unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from app.catalog.loader import check_paths  # noqa: E402
from app.catalog.singer_section import SingerSpec, parse_spec  # noqa: E402
from app.connectors.singer.environments import TapEnvironments, TapInstallError  # noqa: E402
from app.connectors.singer.runner import RunLimits, TapMissing, run_tap  # noqa: E402

START_LIMITS = RunLimits(timeout=120.0, max_output_bytes=1024 * 1024, max_memory_bytes=2 * 1024 ** 3)


def last_line(text: str, limit: int = 300) -> str:
    """The line that says most: the last that names an error (uv ends with generic hints)."""
    lines = [line.strip(" │×╰─▶") for line in text.strip().splitlines()]
    lines = [line for line in lines if line and not line.startswith(("hint:", "help:"))]
    telling = [line for line in lines if re.search(r"error|because|no matching|not found|failed", line, re.I)]
    return ((telling or lines or [""])[-1])[:limit]


def start_check(executable: str) -> dict[str, Any]:
    """Whether the tap starts: ``--about --format=json`` (SDK), else ``--help``."""
    about = run_tap(executable, ["--about", "--format=json"], {}, START_LIMITS)
    if about.succeeded:
        try:
            document = json.loads(about.stdout)
            return {"starts": True, "started_with": "--about", "sdk": True,
                    "sdk_capabilities": document.get("capabilities", [])}
        except ValueError:
            pass
    helped = run_tap(executable, ["--help"], {}, START_LIMITS)
    if helped.succeeded:
        return {"starts": True, "started_with": "--help", "sdk": False}
    return {"starts": False, "sdk": False,
            "reason": f"--help exited {helped.returncode}: {last_line(helped.stderr_tail) or 'no output'}"}


def cover(environments: TapEnvironments, source_type: str, spec: SingerSpec, keep: bool) -> dict[str, Any]:
    started = time.monotonic()
    result: dict[str, Any] = {"requirement": spec.requirement, "package": spec.package, "installed": False,
                              "starts": False, "counted": False}
    try:
        tap = environments.install(source_type, spec)
        result.update(installed=True, version=tap.version, installer=tap.installer, python=tap.python)
        result.update(start_check(tap.executable))
    except TapInstallError as error:
        result["reason"] = f"install failed: {error}: {last_line(error.output)}".rstrip(": ")
    except TapMissing as error:
        result["reason"] = f"did not start: {error}"
    finally:
        if not keep:
            environments.remove(source_type)
    result["counted"] = bool(result["installed"] and result["starts"])
    result["seconds"] = round(time.monotonic() - started, 1)
    print(f"{source_type}: {'ok' if result['counted'] else 'NO'} {result.get('version', '')} "
          f"{result.get('reason', '')} ({result['seconds']} s)", flush=True)
    return result


def markdown(report: dict[str, Any]) -> str:
    types = report["types"]
    counted = sum(1 for r in types.values() if r["counted"])
    installed = sum(1 for r in types.values() if r["installed"])
    lines = [
        "# Singer tap coverage",
        "",
        f"Written by `scripts/tap_coverage.py` on {report['generated_at']} (Python {report['python']}, "
        f"{report['installer']}). Every declared tap was installed the way `flask connect taps install` "
        "installs it and started through the tap runner.",
        "",
        f"- declared: {len(types)}",
        f"- installed: {installed}",
        f"- installed and started (counted): {counted}",
        "",
        "| type | requirement | installed | version | starts | SDK | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for source_type, r in sorted(types.items()):
        note = (r.get("reason") or "").replace("|", "\\|")
        lines.append(f"| {source_type} | `{r['requirement']}` | {'yes' if r['installed'] else 'no'} | "
                     f"{r.get('version', '')} | {'yes' if r['starts'] else 'no'} | {'yes' if r.get('sdk') else ''} "
                     f"| {note} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("types", nargs="*", help="only these types (default: every declared one)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=None, help="scratch taps directory")
    parser.add_argument("--keep", action="store_true", help="keep the environments")
    parser.add_argument("--cards", type=Path, default=REPO_ROOT / "report_cards")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs")
    args = parser.parse_args(argv)

    cards, problems = check_paths([args.cards])
    if problems:
        raise SystemExit("\n".join(map(str, problems)))
    specs = {t: parse_spec(c.singer) for t, c in cards.items() if c.singer is not None}
    chosen = {t: s for t, s in specs.items() if not args.types or t in args.types}
    scratch = args.dir or Path(tempfile.mkdtemp(prefix="connect-tap-coverage-"))
    environments = TapEnvironments(scratch)
    print(f"{len(chosen)} taps into {scratch}, {args.jobs} at a time", flush=True)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {t: pool.submit(cover, environments, t, s, args.keep) for t, s in sorted(chosen.items())}
        results = {t: f.result() for t, f in futures.items()}

    out_json = args.out / "tap-coverage.json"
    previous = json.loads(out_json.read_text())["types"] if out_json.exists() and args.types else {}
    report: dict[str, Any] = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
              "python": platform.python_version(), "installer": environments.installer_version(),
              "types": dict(sorted({**previous, **results}.items()))}
    args.out.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "tap-coverage.md").write_text(markdown(report))
    counted = sum(1 for r in report["types"].values() if r["counted"])
    print(f"declared {len(report['types'])}, counted {counted}; wrote {out_json} and tap-coverage.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
