"""``flask connect …``: set-up, accounts, catalog checks (and, later, key rotation and workers)."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click
from flask import current_app
from flask.cli import with_appcontext

from .config import settings_from_environment

if TYPE_CHECKING:
    from .catalog.singer_section import SingerSpec
    from .connectors.singer.environments import InstalledTap, TapEnvironments, TapInstallError


@click.group("connect")
def connect_cli() -> None:
    """Manage the connect service."""


@connect_cli.command("check-report-cards")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
def check_report_cards(paths: tuple[Path, ...]) -> None:
    """Validate report card files or folders (default: CONNECT_REPORT_CARDS) without starting."""
    from .catalog.loader import check_paths, split_paths

    locations = list(paths) or split_paths(str(settings_from_environment()["REPORT_CARDS"]))
    cards, problems = check_paths(locations)
    for problem in problems:
        click.echo(str(problem), err=True)
    if problems:
        click.echo(f"{len(problems)} problem(s) found", err=True)
        sys.exit(1)
    managed = sum(1 for card in cards.values() if card.managed_oauth)
    click.echo(f"{len(cards)} report cards OK ({managed} with managed OAuth)")


@connect_cli.command("migrate")
@with_appcontext
def migrate() -> None:
    """Apply database migrations."""
    from . import db, migrations

    migrations.upgrade(db.get_db().engine)
    click.echo("database is at the newest schema")


def ensure_instance_secret(name: str, configured: bool, env_var: str, what: str,
                           make: Callable[[], str]) -> str | None:
    """Say where a secret comes from; generate it into instance/ (mode 0600) when it has no source.

    Returns the generated value (to be shown once), or None when it already existed.
    """
    path = Path(current_app.instance_path) / name
    if configured and not path.exists():
        click.echo(f"{what}: from {env_var}")
        return None
    if path.exists():
        click.echo(f"{what}: from {path}")
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    value = make()
    path.write_text(value + "\n")
    current_app.config[env_var.removeprefix("CONNECT_")] = value
    click.echo(f"{what}: generated into {path} (set {env_var} to use your own)")
    return value


@connect_cli.command("init")
@with_appcontext
def init() -> None:
    """First-start set-up for `make run`: migrations, operator token, encryption key."""
    from . import db, migrations

    migrations.upgrade(db.get_db().engine)
    click.echo(f"database: migrated ({db.get_db().engine.url.render_as_string(hide_password=True)})")
    token = ensure_instance_secret(
        "operator_token", bool(current_app.config.get("OPERATOR_TOKEN")), "CONNECT_OPERATOR_TOKEN",
        "operator token", lambda: "op_" + secrets.token_urlsafe(32))
    if token:
        click.echo(f"  the operator token, shown this once: {token}")


@connect_cli.command("create-account")
@click.argument("name")
@click.option("--external-id", default=None, help="Your own id for the account.")
@with_appcontext
def create_account(name: str, external_id: str | None) -> None:
    """Create an account and print its first API token."""
    from . import db
    from .accounts.service import create_account as create

    with db.get_db().Session() as session:
        account, token = create(session, name, external_id)
    click.echo(f"account {account.id} ({account.name}) created; its token (shown once):")
    click.echo(token)


@connect_cli.command("rotate-keys")
@click.option("--batch-size", default=500, show_default=True)
@with_appcontext
def rotate_keys(batch_size: int) -> None:
    """Re-encrypt every stored secret under the first key of CONNECT_ENCRYPTION_KEYS.

    Run it after putting a new key first; once it reports 0 rows left under old keys, the old
    keys can be removed from the setting.
    """
    from . import db
    from .crypto import KeyringError, get_keyring
    from .secrets_store import rotate_all

    try:
        counts = rotate_all(db.get_db().Session, get_keyring(), batch_size)
    except KeyringError as error:
        click.echo(f"rotation stopped: {error}. Rows re-encrypted before it stay so: configure the key "
                   "that row was sealed with (or remove the row), then run rotate-keys again", err=True)
        sys.exit(1)
    for table, count in counts.items():
        click.echo(f"{table}: {count} re-encrypted")
    click.echo(f"all secrets are now under key {get_keyring().primary_id!r}")


@connect_cli.command("worker")
@click.option("--threads", default=2, show_default=True, help="Jobs run at once in this process.")
@click.option("--poll-interval", default=1.0, show_default=True, help="Seconds between polls when idle.")
@with_appcontext
def worker(threads: int, poll_interval: float) -> None:
    """Run job workers (connection checks, discovery) until interrupted.

    Any number of these processes, on any number of machines, can share one PostgreSQL database.
    """
    import signal
    import threading

    from .jobs.worker import Worker, listen_for_work
    from .wiring import services

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    listen_for_work(app)
    workers = [Worker(app, services(app).jobs, poll_interval=poll_interval) for _ in range(threads)]
    running = [threading.Thread(target=w.run_forever, daemon=True) for w in workers]
    for thread in running:
        thread.start()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    click.echo(f"{threads} worker thread(s) running; Ctrl-C stops them")
    stop.wait()
    for each in workers:
        each.stop()
    for thread in running:
        thread.join(timeout=30)


@connect_cli.group("taps")
def taps() -> None:
    """Install, list and remove the Singer taps that check and discover sources (one virtual
    environment per source type under CONNECT_TAPS_DIR, default instance/taps/)."""


def _tap_environments() -> TapEnvironments:
    """The taps directory of the app's Singer connector (one home for where taps live)."""
    from .connectors.registry import get_connectors
    from .connectors.singer.connector import SingerConnector

    singer = get_connectors().of_kind("singer")
    assert isinstance(singer, SingerConnector)  # create_app registers it (app/connectors/registry.py)
    return singer.environments


def _declared_specs(types: tuple[str, ...], every: bool) -> dict[str, SingerSpec]:
    """The singer specs of the named types (or of every type with an installable tap)."""
    from .catalog import get_catalog
    from .catalog.singer_section import parse_spec

    catalog = get_catalog()
    if every:
        specs = {t: parse_spec(c.singer) for t, c in catalog.cards.items() if c.singer is not None}
        return {t: s for t, s in specs.items() if s.installable}
    chosen = {}
    for source_type in types:
        card = catalog.get(source_type)
        if card is None:
            raise click.UsageError(f"no source type {source_type!r} in the catalog")
        if card.singer is None:
            raise click.UsageError(f"source type {source_type} has no singer section (no tap to install)")
        chosen[source_type] = parse_spec(card.singer)
    return chosen


@taps.command("install")
@click.argument("types", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every type whose card declares an installable tap.")
@click.option("--jobs", default=1, show_default=True, help="Installs run at once.")
@with_appcontext
def taps_install(types: tuple[str, ...], every: bool, jobs: int) -> None:
    """Install (or reinstall) the taps of TYPES: one virtual environment each, made with uv."""
    from concurrent.futures import ThreadPoolExecutor

    from .connectors.singer.environments import TapInstallError

    if bool(types) == every:
        raise click.UsageError("name source types, or give --all")
    specs = _declared_specs(types, every)
    environments = _tap_environments()
    for source_type, spec in specs.items():
        if not spec.installable:
            click.echo(f"{source_type}: note: the card says this tap does not install here "
                       f"({spec.not_installable_reason}); trying anyway", err=True)
    failed = 0

    def install(item: tuple[str, SingerSpec]) -> tuple[str, InstalledTap | None, TapInstallError | None]:
        source_type, spec = item
        try:
            return source_type, environments.install(source_type, spec), None
        except TapInstallError as error:
            return source_type, None, error

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for source_type, tap, error in pool.map(install, specs.items()):
            if tap is not None:
                click.echo(f"{source_type}: installed {tap.package} {tap.version} in {tap.environment}")
                _recheck_waiting(source_type)
            elif error is not None:
                failed += 1
                click.echo(f"{source_type}: FAILED: {error}\n{error.output}", err=True)
    click.echo(f"{len(specs) - failed} installed, {failed} failed")
    if failed:
        sys.exit(1)


def _recheck_waiting(source_type: str) -> None:
    """Queue a check for the type's sources whose check failed because the tap was not installed."""
    from sqlalchemy.exc import SQLAlchemyError

    from . import db
    from .connectors.singer.connector import NOT_INSTALLED
    from .discovery.service import recheck_waiting

    try:
        with db.get_db().Session() as session:
            queued = recheck_waiting(session, source_type, NOT_INSTALLED)
    except SQLAlchemyError as error:  # taps may be installed before the database is set up
        click.echo(f"{source_type}: no waiting source re-checked ({type(error).__name__}: is the database "
                   "migrated? `flask connect migrate`); POST /v4/sources/{id}/discover re-checks one", err=True)
        return
    if queued:
        click.echo(f"{source_type}: {len(queued)} source(s) waiting for this tap queued for a check")


@taps.command("list")
@click.option("--installed", "only_installed", is_flag=True, help="Only the installed taps.")
@with_appcontext
def taps_list(only_installed: bool) -> None:
    """Each type with a tap: its requirement, the installed version and where it lives."""
    from .catalog import get_catalog

    environments = _tap_environments()
    installed = {tap.source_type: tap for tap in environments.installed_all()}
    rows = []
    for source_type, card in get_catalog().cards.items():
        if card.singer is None:
            continue
        tap = installed.get(source_type)
        if tap is None and only_installed:
            continue
        usable = tap is not None and environments.installed(source_type) is not None
        version = (tap.version if usable else f"{tap.version} (executable missing)") if tap else "-"
        rows.append((source_type, str(card.singer.get("requirement")), version,
                     tap.environment if tap else "-"))
    header = ("type", "requirement", "installed", "where")
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    for row in [header, *rows]:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    click.echo(f"{len(installed)} installed, {len(rows)} listed")


@taps.command("remove")
@click.argument("types", nargs=-1, required=True)
@with_appcontext
def taps_remove(types: tuple[str, ...]) -> None:
    """Remove the taps of TYPES (their sources then answer checks with connector_not_installed)."""
    environments = _tap_environments()
    for source_type in types:
        removed = environments.remove(source_type)
        click.echo(f"{source_type}: {'removed' if removed else 'was not installed'}")


@connect_cli.command("export-source")
@click.argument("source_id", type=int)
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@with_appcontext
def export_source(source_id: int, directory: Path) -> None:
    """Write a fully configured source's tap config (credentials in clear) and catalog into
    DIRECTORY, for a pipeline host to run ``tap --config config.json --catalog catalog.json``.

    The one way credentials leave the service in clear: the files are 0600 and the export is
    recorded as a ``source_exported`` event of the source."""
    from . import db
    from .catalog import get_catalog
    from .connectors.registry import get_connectors
    from .connectors.singer.connector import SingerConnector
    from .crypto import get_keyring
    from .discovery.export import export_source as export
    from .errors import ApiError

    singer = get_connectors().of_kind("singer")
    assert isinstance(singer, SingerConnector)  # create_app registers it (app/connectors/registry.py)
    with db.get_db().Session() as session:
        try:
            written = export(session, get_catalog(), get_keyring(), singer, source_id, directory)
        except ApiError as error:
            click.echo(f"source {source_id} not exported: {error}", err=True)
            sys.exit(1)
    for path in written:
        click.echo(f"wrote {path} (mode 0600)")
    click.echo("it holds the source's credentials in clear: keep it on the pipeline host only")
