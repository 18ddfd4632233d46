"""``flask connect taps install|list|remove``: explicit, logged, and clear about what it will not do."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result
from flask import Flask

from app import create_app
from app.cli import connect_cli
from app.db import get_db

from .conftest import DEFAULT_REPORT_CARDS, base_config
from .singer_support import fake_singer_section, singer_document


@pytest.fixture()
def cli_app(migrated_database: str, tmp_path: Path) -> Iterator[Flask]:
    cards = tmp_path / "cards"
    cards.mkdir()
    document = singer_document("test.singer-cli", fake_singer_section())
    (cards / "test.singer-cli.json").write_text(json.dumps(document))
    application = create_app(base_config(
        migrated_database, REPORT_CARDS=os.pathsep.join([str(DEFAULT_REPORT_CARDS), str(cards)]),
        TAPS_DIR=str(tmp_path / "taps")))
    yield application
    get_db(application).dispose()


def taps(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(connect_cli, ["taps", *args])


@pytest.mark.parametrize("args, words", [
    ((), "name source types, or give --all"),
    (("platform.hubspot", "--all"), "name source types, or give --all"),
    (("platform.nope",), "no source type 'platform.nope'"),
    (("import_api",), "has no singer section"),
])
def test_install_refuses_what_it_cannot_do(cli_app: Flask, args: tuple[str, ...], words: str) -> None:
    result = taps(cli_app, "install", *args)
    assert result.exit_code == 2 and words in result.output
    assert not (Path(cli_app.config["TAPS_DIR"])).exists()


def test_install_list_and_remove_a_tap(cli_app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    listed = taps(cli_app, "list")
    assert listed.exit_code == 0 and "0 installed, 149 listed" in listed.output

    installed = taps(cli_app, "install", "test.singer-cli")
    assert installed.exit_code == 0, installed.output
    assert "test.singer-cli: installed tap-fake 1.0.0 in " in installed.output
    assert any(r.getMessage() == "tap installed" and r.source_type == "test.singer-cli" for r in caplog.records)

    listed = taps(cli_app, "list", "--installed")
    [row] = [line for line in listed.output.splitlines() if line.startswith("test.singer-cli")]
    assert "1.0.0" in row and str(Path(cli_app.config["TAPS_DIR"]) / "test.singer-cli") in row

    assert "test.singer-cli: removed" in taps(cli_app, "remove", "test.singer-cli").output
    assert "test.singer-cli: was not installed" in taps(cli_app, "remove", "test.singer-cli").output
    assert "0 installed" in taps(cli_app, "list", "--installed").output


def test_a_failed_install_says_why_and_exits_non_zero(migrated_database: str, tmp_path: Path) -> None:
    cards = tmp_path / "cards"
    cards.mkdir()
    broken = fake_singer_section(executable="tap-not-there")
    (cards / "test.singer-broken.json").write_text(json.dumps(singer_document("test.singer-broken", broken)))
    application = create_app(base_config(migrated_database, REPORT_CARDS=str(cards), TAPS_DIR=str(tmp_path / "t")))
    try:
        result = taps(application, "install", "test.singer-broken")
    finally:
        get_db(application).dispose()
    assert result.exit_code == 1
    assert "installed no executable 'tap-not-there' (it has: tap-fake)" in result.output
    assert "0 installed, 1 failed" in result.output


def test_an_install_or_removal_by_another_process_is_seen_at_once(tmp_path: Path) -> None:
    """The manifest is remembered by its file's stat: a new install (a new file, moved into place)
    or a removal shows on the next question, with no restart and no stale answer."""
    from dataclasses import asdict, replace

    from app.connectors.singer.environments import MANIFEST, InstalledTap, TapEnvironments

    environments = TapEnvironments(tmp_path, uv="")
    tap = InstalledTap(source_type="test.singer-cli", requirement="tap-fake", package="tap-fake", version="1.0.0",
                       executable=os.path.realpath("/bin/sh"), environment=str(tmp_path / "env"), installer="pip",
                       python="3.11", installed_at="2026-12-01T00:00:00Z")
    home = tmp_path / "test.singer-cli"
    home.mkdir()

    def write(installed: InstalledTap) -> None:  # as an install does: a new file moved into place
        (home / "manifest.tmp").write_text(json.dumps(asdict(installed)))
        os.replace(home / "manifest.tmp", home / MANIFEST)

    assert environments.installed("test.singer-cli") is None
    write(tap)
    assert environments.installed("test.singer-cli") == tap
    write(replace(tap, version="1.0.1"))
    assert environments.installed("test.singer-cli") == replace(tap, version="1.0.1")
    (home / MANIFEST).unlink()
    assert environments.installed("test.singer-cli") is None
