"""Operator-installed taps: one virtual environment per source type under one directory.

Layout under the taps directory (``CONNECT_TAPS_DIR``, default ``instance/taps/``)::

    <type>/manifest.json     what is installed: requirement, version, executable, environment
    <type>/env-<stamp>/      the virtual environment the manifest names
    <type>/.lock             taken while installing or removing, so two installs never interleave

An install builds a fresh environment beside the current one and switches the manifest to it with
an atomic rename, then deletes the old one: a run that already started keeps its files, and an
install that fails leaves the previous tap in place. Environments are made by ``uv`` (a runtime
dependency, so it is in the service's own virtual environment) or by ``venv`` + ``pip`` when ``uv``
is missing. Each type has its own environment, so two taps that pin different versions of one
library coexist.

Nothing here runs at request time: the service only reads manifests (:meth:`installed`);
installing and removing are the operator's (``flask connect taps …``) and are logged.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from ...catalog.singer_section import SingerSpec

MANIFEST = "manifest.json"
OUTPUT_TAIL_CHARACTERS = 4000
log = logging.getLogger("connect.taps")


@dataclass(frozen=True)
class InstalledTap:
    source_type: str
    requirement: str
    package: str
    version: str
    executable: str  # absolute path of the console script
    environment: str  # absolute path of the virtual environment
    installer: str  # "uv 0.13.9" or "pip"
    python: str  # the environment's Python version
    installed_at: str  # ISO 8601, UTC


class TapInstallError(Exception):
    """An install that did not finish; ``output`` is the installer's output tail (no secrets: an
    install sees no source's properties)."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


class TapEnvironments:
    """The taps installed under ``root``."""

    def __init__(self, root: Path | str, *, python: str | None = None, install_timeout: float = 900.0,
                 uv: str | None = None) -> None:
        self.root = Path(root)
        self.python = python or sys.executable
        self.install_timeout = install_timeout
        self._uv = uv if uv is not None else find_uv()
        # Manifests read, by type, with the stat of the file they were read from: a report card
        # GET asks whether the type's tap is installed, and one stat is cheaper than a read and a
        # parse (an install writes a new file, atomically, so its stat changes).
        self._read: dict[str, tuple[tuple[int, int, int], InstalledTap]] = {}

    def directory(self, source_type: str) -> Path:
        # Card types match ^[a-z][a-z0-9_]*([.-][a-z0-9_]+)*$ (report_card.schema.json): a safe name.
        if not source_type or "/" in source_type or source_type.startswith("."):
            raise ValueError(f"not a source type: {source_type!r}")
        return self.root / source_type

    def installed(self, source_type: str) -> InstalledTap | None:
        """The type's tap if its manifest is there and its executable still exists."""
        tap = self._manifest(source_type)
        if tap is None or not os.access(tap.executable, os.X_OK):
            return None
        return tap

    def installed_all(self) -> list[InstalledTap]:
        if not self.root.is_dir():
            return []
        taps = (self._manifest(path.name) for path in sorted(self.root.iterdir()) if path.is_dir())
        return [tap for tap in taps if tap is not None]

    def _manifest(self, source_type: str) -> InstalledTap | None:
        path = os.path.join(self.directory(source_type), MANIFEST)
        try:
            found = os.stat(path)
            stamp = (found.st_ino, found.st_mtime_ns, found.st_size)
            known = self._read.get(source_type)
            if known is not None and known[0] == stamp:
                return known[1]
            tap = InstalledTap(**json.loads(Path(path).read_text()))
        except (OSError, ValueError, TypeError):
            self._read.pop(source_type, None)
            return None
        self._read[source_type] = (stamp, tap)
        return tap

    def install(self, source_type: str, spec: SingerSpec) -> InstalledTap:
        """Install (or reinstall) the type's tap; the previous install stays until this one works."""
        started = time.monotonic()
        home = self.directory(source_type)
        home.mkdir(parents=True, exist_ok=True)
        with _locked(home):
            previous = self._manifest(source_type)
            environment = home / f"env-{time.time_ns()}"
            try:
                installer = self._create(environment, [spec.requirement, *spec.extra_requirements])
                tap = self._describe(source_type, spec, environment, installer)
            except BaseException:
                shutil.rmtree(environment, ignore_errors=True)
                raise
            _write_atomically(home / MANIFEST, json.dumps(asdict(tap), indent=2) + "\n")
            if previous is not None and Path(previous.environment) != environment:
                shutil.rmtree(previous.environment, ignore_errors=True)
        log.info("tap installed", extra={
            "source_type": source_type, "requirement": spec.requirement, "version": tap.version,
            "executable": tap.executable, "installer": tap.installer,
            "seconds": round(time.monotonic() - started, 1)})
        return tap

    def remove(self, source_type: str) -> bool:
        """Remove the type's tap; False when none was installed."""
        home = self.directory(source_type)
        if not home.is_dir():
            return False
        with _locked(home):
            tap = self._manifest(source_type)
            (home / MANIFEST).unlink(missing_ok=True)
            for environment in home.glob("env-*"):
                shutil.rmtree(environment, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
        log.info("tap removed", extra={"source_type": source_type,
                                       "requirement": tap.requirement if tap else None})
        return tap is not None

    def _create(self, environment: Path, requirements: list[str]) -> str:
        if self._uv:
            self._run([self._uv, "venv", "--quiet", "--python", self.python, str(environment)])
            self._run([self._uv, "pip", "install", "--quiet", "--python", str(environment / "bin" / "python"),
                       *requirements])
            return self.installer_version()
        self._run([self.python, "-m", "venv", str(environment)])
        self._run([str(environment / "bin" / "python"), "-m", "pip", "install", "--quiet",
                   "--disable-pip-version-check", *requirements])
        return "pip"

    def _run(self, command: list[str]) -> str:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=self.install_timeout,
                                  env=_installer_environment(), check=False)
        except subprocess.TimeoutExpired:
            raise TapInstallError(f"{Path(command[0]).name} did not finish within "
                                  f"{self.install_timeout:.0f} s") from None
        output = (done.stdout + done.stderr)[-OUTPUT_TAIL_CHARACTERS:]
        if done.returncode != 0:
            raise TapInstallError(f"{Path(command[0]).name} {command[1]} failed (exit {done.returncode})", output)
        return output

    def installer_version(self) -> str:
        """``uv <version>`` of the uv in use, or ``pip`` when environments are made with venv + pip."""
        if not self._uv:
            return "pip"
        try:
            return subprocess.run([self._uv, "--version"], capture_output=True, text=True,
                                  timeout=30, check=False).stdout.strip() or "uv"
        except (OSError, subprocess.TimeoutExpired):
            return "uv"

    def _describe(self, source_type: str, spec: SingerSpec, environment: Path, installer: str) -> InstalledTap:
        executable = environment / "bin" / spec.executable
        if not os.access(executable, os.X_OK):
            scripts = sorted(p.name for p in (environment / "bin").iterdir() if p.name.startswith("tap"))
            raise TapInstallError(f"{spec.requirement} installed no executable {spec.executable!r} "
                                  f"(it has: {', '.join(scripts) or 'no tap-* script'})")
        probe = ("import importlib.metadata as m, platform, sys; "
                 "print(m.version(sys.argv[1])); print(platform.python_version())")
        output = self._run([str(environment / "bin" / "python"), "-I", "-c", probe, spec.package])
        version, python = (output.strip().splitlines() + ["", ""])[:2]
        return InstalledTap(
            source_type=source_type, requirement=spec.requirement, package=spec.package, version=version,
            executable=str(executable), environment=str(environment), installer=installer, python=python,
            installed_at=datetime.now(UTC).isoformat(timespec="seconds"))


def find_uv() -> str | None:
    """``uv`` from the service's own environment (the ``uv`` package), else from PATH."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


def _installer_environment() -> dict[str, str]:
    """The installer's environment: the operator's own (proxies, indexes, uv's cache) less the
    service's settings, which an install has no business seeing."""
    return {name: value for name, value in os.environ.items() if not name.startswith("CONNECT_")}


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


@contextmanager
def _locked(home: Path) -> Iterator[None]:
    with open(home / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
