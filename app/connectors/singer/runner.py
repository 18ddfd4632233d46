"""Run a tap in a process of its own, fenced in.

* **Files**: the config (decrypted credentials included) is written to a 0600 file in a private
  directory (``mkdtemp``: 0700) that is also the tap's working directory, ``HOME`` and ``TMPDIR``;
  the directory is removed when the run ends, however it ends.
* **Environment**: nothing of the service's is inherited — only a minimal ``PATH`` (the tap's own
  ``bin`` first), ``HOME``, ``LANG`` and ``TMPDIR``; no ``CONNECT_*`` setting, no secret.
* **Time**: past ``timeout`` the whole process group is killed (a tap's children too).
* **Output**: stdout is read up to ``max_output_bytes``; past that the group is killed and the run
  is marked ``output_capped`` (nothing larger than the cap is ever held). Only the last
  ``stderr_tail_bytes`` of stderr are kept, and they are redacted (app.redaction plus the run's
  own secret values) before anything else sees them.
* **Memory**: ``RLIMIT_AS`` is set to ``max_memory_bytes`` in the child before the tap starts. It
  is set by a two-line Python trampoline that then ``exec``s the tap, rather than in a
  ``preexec_fn``: the service runs job workers in threads, and Python's documentation warns that
  ``preexec_fn`` can deadlock a child forked from a threaded process.
* **Config read-back**: after the run the config file is read again and every key the tap added
  or changed (a rotated refresh token) is returned in :attr:`TapRun.config_changes`, whatever the
  exit code: a tap that rotated its token and then failed has still used up the old one.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from ...redaction import MASK, redact
from .config import config_changes

CONFIG_FILE = "config.json"
READ_CHUNK = 65536
EXIT_GRACE_SECONDS = 2.0
MIN_SECRET_LENGTH = 4  # as app.redaction: shorter values would mask ordinary words
_TRAMPOLINE = ("import os,resource,sys\n"
               "n=int(sys.argv[1]);resource.setrlimit(resource.RLIMIT_AS,(n,n))\n"
               "os.execv(sys.argv[2],sys.argv[2:])")


@dataclass(frozen=True)
class RunLimits:
    timeout: float = 300.0
    max_output_bytes: int = 64 * 1024 * 1024
    max_memory_bytes: int | None = 2 * 1024 * 1024 * 1024
    stderr_tail_bytes: int = 8192


@dataclass(frozen=True)
class TapRun:
    """What one run of a tap did. ``stdout`` is at most the cap; ``stderr_tail`` is redacted."""

    arguments: tuple[str, ...]
    returncode: int | None  # None: killed by the runner (timeout or output cap)
    stdout: bytes = field(repr=False)
    stderr_tail: str
    timed_out: bool
    output_capped: bool
    seconds: float
    # Keys the tap added or changed in its config file; values are secrets (never logged).
    config_changes: Mapping[str, Any] = field(repr=False)

    @property
    def succeeded(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.output_capped


class TapMissing(Exception):
    """The executable is gone (the tap was removed between install and run)."""


def run_tap(executable: str | Path, arguments: Sequence[str], config: Mapping[str, Any], limits: RunLimits,
            *, secrets: Collection[str] = (), files: Mapping[str, Any] | None = None) -> TapRun:
    """Run ``executable --config <file> *arguments``; ``files`` are more JSON files written beside
    the config (``{"catalog.json": …}``), named in ``arguments`` by ``{dir}/<name>``."""
    workdir = Path(tempfile.mkdtemp(prefix="connect-tap-"))
    try:
        config_path = workdir / CONFIG_FILE
        _write_private(config_path, config)
        for name, document in (files or {}).items():
            _write_private(workdir / name, document)
        argv = [str(executable), "--config", str(config_path),
                *(a.replace("{dir}", str(workdir)) for a in arguments)]
        started = time.monotonic()
        process = _spawn(argv, workdir, limits)
        stdout, stderr, timed_out, capped = _collect(process, limits, started)
        seconds = time.monotonic() - started
        changes = config_changes(config, _read_back(config_path))
        known = [*secrets, *(v for v in changes.values() if isinstance(v, str))]
        return TapRun(
            arguments=tuple(arguments), returncode=None if (timed_out or capped) else process.returncode,
            stdout=stdout, stderr_tail=redact_text(stderr.decode("utf-8", "replace"), known),
            timed_out=timed_out, output_capped=capped, seconds=seconds, config_changes=changes)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def redact_text(text: str, secrets: Collection[str]) -> str:
    """``text`` with the given secret values and everything app.redaction knows masked."""
    for secret in sorted((s for s in secrets if len(s) >= MIN_SECRET_LENGTH), key=len, reverse=True):
        text = text.replace(secret, MASK)
        escaped = json.dumps(secret)[1:-1]
        if escaped != secret:
            text = text.replace(escaped, MASK)
    return redact(text)


def tap_environment(executable: Path, workdir: Path) -> dict[str, str]:
    """All a tap process inherits: its own ``bin`` on a minimal PATH, and its private directory."""
    return {"PATH": f"{executable.parent}:/usr/local/bin:/usr/bin:/bin", "HOME": str(workdir),
            "TMPDIR": str(workdir), "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}


def _write_private(path: Path, document: Any) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(document, handle)


def _read_back(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # the tap removed or garbled its file: nothing to keep from it


def _spawn(argv: list[str], workdir: Path, limits: RunLimits) -> subprocess.Popen[bytes]:
    executable = Path(argv[0])
    if not os.access(executable, os.X_OK):
        raise TapMissing(f"{executable} is not there (or not executable)")
    command = argv
    if limits.max_memory_bytes:
        command = [sys.executable, "-I", "-S", "-c", _TRAMPOLINE, str(limits.max_memory_bytes), *argv]
    try:
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd=workdir, env=tap_environment(executable, workdir),
                                start_new_session=True, close_fds=True)
    except FileNotFoundError:
        raise TapMissing(f"{executable} is not there") from None


def _collect(process: subprocess.Popen[bytes], limits: RunLimits,
             started: float) -> tuple[bytes, bytes, bool, bool]:
    """Read both pipes until the tap ends, runs out of time or writes too much."""
    deadline = started + limits.timeout
    stdout, stderr = bytearray(), bytearray()
    timed_out = capped = False
    exited_at: float | None = None
    with selectors.DefaultSelector() as selector:
        selector.register(cast(IO[bytes], process.stdout), selectors.EVENT_READ, stdout)
        selector.register(cast(IO[bytes], process.stderr), selectors.EVENT_READ, stderr)
        while selector.get_map():
            now = time.monotonic()
            if now >= deadline:
                timed_out = True
                break
            if exited_at is None and process.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > EXIT_GRACE_SECONDS:
                break  # the tap is done; a child of its own still holds the pipes open
            remaining = deadline - now
            for key, _ in selector.select(timeout=min(remaining, 1.0)):
                chunk = os.read(key.fd, READ_CHUNK)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                buffer: bytearray = key.data
                buffer += chunk
                if buffer is stderr and len(stderr) > limits.stderr_tail_bytes * 2:
                    del stderr[:-limits.stderr_tail_bytes]
            if len(stdout) > limits.max_output_bytes:
                capped = True
                del stdout[limits.max_output_bytes:]
                break
    _end(process)
    _close(process.stdout, process.stderr)
    return bytes(stdout), bytes(stderr[-limits.stderr_tail_bytes:]), timed_out, capped


def _end(process: subprocess.Popen[bytes]) -> None:
    """Kill whatever is left of the tap's process group, and reap the tap."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:  # unkillable (stuck in the kernel): leave it, never hang the worker
        pass


def _close(*pipes: IO[bytes] | None) -> None:
    for pipe in pipes:
        if pipe is not None:
            pipe.close()
