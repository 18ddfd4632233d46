"""Load generators: ``wrk`` (preferred), or an asyncio HTTP/1.1 client in a process of its own.

Both are closed-loop: a fixed number of connections, each sending its next request as
soon as the previous answer arrived, for a fixed duration. Both report requests, errors (transport
errors and HTTP statuses ≥ 400) and latency percentiles in microseconds, plus the CPU time the
generator itself used (from ``wait4``), so a reader can see that it was not the bottleneck.

The Python client (``python -m bench.loadgen …``) exists for machines where wrk cannot be installed
(no root, no Debian packages); it speaks just enough HTTP/1.1 for this service (Content-Length
bodies, keep-alive) and is several times more expensive per request than wrk.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

LUA_SCRIPT = Path(__file__).resolve().parent / "lua" / "bench.lua"
SEED_FREQUENCY = "60"  # what bench/seed.py gives every seeded source


@dataclass
class Choice:
    kind: str  # "wrk" | "python"
    version: str
    why: str


def _wrk_version(path: str) -> str:
    out = subprocess.run([path, "-v"], capture_output=True, text=True)
    text = (out.stdout + out.stderr).strip()
    return text.splitlines()[0].split(" Copyright")[0] if text else "wrk"


def choose(preference: str = "auto") -> Choice:
    """wrk when present or installable with apt-get (as root); otherwise the Python client."""
    if preference == "python":
        return Choice("python", f"bench.loadgen (Python {sys.version.split()[0]})", "asked for with --loadgen python")
    path = shutil.which("wrk")
    if path is None:
        why_not = _install_wrk()
        path = shutil.which("wrk")
        if path is None:
            if preference == "wrk":
                raise SystemExit(f"wrk is not installed and could not be: {why_not}")
            return Choice("python", f"bench.loadgen (Python {sys.version.split()[0]})",
                          f"wrk could not be installed ({why_not}); falling back to the asyncio client")
        return Choice("wrk", _wrk_version(path), "installed by this run with apt-get (Debian package wrk)")
    return Choice("wrk", _wrk_version(path), f"found at {path}")


def _install_wrk() -> str:
    """Install Debian's wrk; returns "" on success, else why it failed."""
    if shutil.which("apt-get") is None:
        return "no apt-get on this machine"
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            return "not root and no sudo"
        prefix = ["sudo", "-n"]
    install = [*prefix, "apt-get", "install", "-y", "-q", "wrk"]
    print("bench: wrk is missing; installing it: " + " ".join(install), flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(install, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        # The package lists may be missing or stale: update them once and try again.
        subprocess.run([*prefix, "apt-get", "update", "-q"], capture_output=True, text=True, env=env)
        done = subprocess.run(install, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        output = (done.stderr or done.stdout).strip()
        return output.splitlines()[-1] if output else f"apt-get exited {done.returncode}"
    return ""


def _run_process(command: list[str], timeout: float) -> str:
    """Run a generator process to its end; its CPU time lands in RUSAGE_CHILDREN once reaped."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise
    return out


def run(choice: Choice, base_url: str, mode: str, token: str | None, arg: str, *, duration: float,
        connections: int, threads: int = 1, nonce: str = "x", keep_alive: bool = False) -> dict:
    """One closed-loop run; returns requests/s, errors and latency percentiles (ms)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    if choice.kind == "wrk":
        command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(duration))}s",
                   "--timeout", "10s", "-s", str(LUA_SCRIPT), base_url, "--",
                   mode, token or "-", arg, nonce, str(threads), "keep-alive" if keep_alive else "close"]
    else:
        command = [sys.executable, "-m", "bench.loadgen", "--url", base_url, "--mode", mode,
                   "--token", token or "-", "--arg", arg, "--nonce", nonce,
                   "--duration", str(duration), "--connections", str(connections)]
        if keep_alive:
            command.append("--keep-alive")
    out = _run_process(command, timeout=duration + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"load generator printed no result:\n{out[-2000:]}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    seconds = raw["duration_us"] / 1e6
    errors = raw["errors"]
    return {
        "requests": raw["requests"],
        "seconds": round(seconds, 3),
        "rps": round(raw["requests"] / seconds, 1) if seconds else 0.0,
        "p50_ms": round(raw["latency_us"]["p50"] / 1000, 2),
        "p90_ms": round(raw["latency_us"]["p90"] / 1000, 2),
        "p99_ms": round(raw["latency_us"]["p99"] / 1000, 2),
        "max_ms": round(raw["latency_us"]["max"] / 1000, 2),
        "errors": sum(errors.values()),
        "error_detail": errors,
        "loadgen_cpu_s": round(cpu, 2),
        "loadgen_cpu_pct_of_one_core": round(100 * cpu / seconds, 1) if seconds else 0.0,
    }


# --- the Python client -------------------------------------------------------------------------


class _Requests:
    """What to send, the same rules as bench/lua/bench.lua (one 'thread')."""

    def __init__(self, host: str, mode: str, token: str, arg: str, nonce: str, keep_alive: bool) -> None:
        self.mode, self.nonce, self.counter = mode, nonce, 0
        auth = f"Authorization: Bearer {token}\r\n" if token != "-" else ""
        close = "" if keep_alive else "Connection: close\r\n"
        self.head = f"Host: {host}\r\n{auth}{close}"
        self.ids = [part for part in arg.split(",") if part] if mode == "put" else []
        self.static = (f"GET {arg} HTTP/1.1\r\n{self.head}\r\n".encode() if mode == "get" else None)

    def next(self) -> bytes:
        if self.static is not None:
            return self.static
        self.counter += 1
        if self.mode == "put":
            n = len(self.ids)
            source_id = self.ids[(self.counter - 1) % n]
            value = "360" if ((self.counter - 1) // n) % 2 == 0 else SEED_FREQUENCY
            body = json.dumps({"properties": {"frequency_in_minutes": value}}).encode()
            line = f"PUT /v4/sources/{source_id} HTTP/1.1\r\n"
        else:
            body = json.dumps({"type": "platform.google-analytics",
                               "display_name": f"Bench {self.nonce} 1 {self.counter}",
                               "properties": {"start_date": "2024-01-01T00:00:00Z",
                                              "frequency_in_minutes": SEED_FREQUENCY}}).encode()
            line = "POST /v4/sources HTTP/1.1\r\n"
        return (f"{line}{self.head}Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                .encode() + body)


async def _connection(host: str, port: int, requests: _Requests, stop_at: float, latencies: list[float],
                      errors: dict[str, int]) -> None:
    reader = writer = None
    while time.perf_counter() < stop_at:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            started = time.perf_counter()
            writer.write(requests.next())
            await writer.drain()
            status_line = await reader.readline()
            if not status_line:
                raise ConnectionError("closed")
            status = int(status_line.split()[1])
            length, close = 0, False
            while True:
                header = await reader.readline()
                if header in (b"\r\n", b""):
                    break
                name, _, value = header.decode("latin-1").partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection" and value.strip().lower() == "close":
                    close = True
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if status >= 400:
                errors["status"] += 1
            if close:
                writer.close()
                reader = writer = None
        except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError):
            errors["read"] += 1
            if writer is not None:
                writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def _main(args: argparse.Namespace) -> dict:
    parts = urlsplit(args.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    latencies: list[float] = []
    errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
    started = time.perf_counter()
    stop_at = started + args.duration
    ids = [part for part in args.arg.split(",") if part]
    tasks = []
    for number in range(args.connections):
        arg = args.arg
        if args.mode == "put":  # each connection its own share of the ids, as wrk threads do
            share = ids[number::args.connections] or ids
            arg = ",".join(share)
        requests = _Requests(f"{host}:{port}", args.mode, args.token, arg, f"{args.nonce}c{number}",
                             args.keep_alive)
        tasks.append(_connection(host, port, requests, stop_at, latencies, errors))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    latencies.sort()

    def percentile(p: float) -> int:
        if not latencies:
            return 0
        return int(latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1e6)

    return {"requests": len(latencies), "duration_us": int(elapsed * 1e6), "bytes": 0, "errors": errors,
            "latency_us": {"p50": percentile(50), "p90": percentile(90), "p99": percentile(99),
                           "max": int(latencies[-1] * 1e6) if latencies else 0,
                           "mean": (sum(latencies) / len(latencies) * 1e6) if latencies else 0.0}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--mode", choices=["get", "put", "post"], required=True)
    parser.add_argument("--token", default="-")
    parser.add_argument("--arg", required=True)
    parser.add_argument("--nonce", default=f"{random.getrandbits(32):08x}")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--keep-alive", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(_main(args))
    print("BENCH_JSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
