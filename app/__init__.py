"""The connect service: ``create_app()`` builds it (config, extensions, blueprints, error handlers)
and wires its parts together (:func:`wire`). Importing a module of this package does nothing."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask

from . import (
    airbyte,
    auth,
    catalog,
    crypto,
    db,
    logs,
    ratelimit,
    request_checks,
    secrets_store,
    security_headers,
    wakeup,
    webhooks,
    wiring,
)
from .config import default_database_url, settings_from_environment
from .connect.service import purge_expired_sessions
from .connectors import registry as connectors
from .connectors.network import DestinationRefused, network_policy
from .discovery.jobs import check_and_discover
from .discovery.keepalive import RUN_EVERY as KEEPALIVE_EVERY
from .discovery.keepalive import keep_tokens_alive
from .discovery.recheck import RUN_EVERY as RECHECK_EVERY
from .discovery.recheck import recheck_connected_sources
from .discovery.service import CHECK_JOB, queue_check_when_ready
from .errors import register_error_handlers
from .extensions import API_SETTINGS, create_api
from .jobs.periodic import PeriodicJob
from .jobs.worker import JobTable, start_embedded_worker
from .models import load_all_models
from .oauth import apps as oauth_apps
from .oauth.handshake import purge_expired_handshakes, redeem_secret
from .oauth.revocation import revoke_source_tokens
from .sources import lifecycle
from .sources.availability import log_sources_without_card
from .sources.writes import SourceHooks
from .webhooks.delivery import prune_history_job, run_deliveries


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True, instance_path=str(_instance_path()))
    app.config.update(API_SETTINGS)
    app.config.update(settings_from_environment())
    if test_config:
        app.config.update(test_config)
    if not app.config.get("DATABASE_URL"):
        app.config["DATABASE_URL"] = default_database_url(app.instance_path)
    if not app.config.get("OPERATOR_TOKEN"):
        app.config["OPERATOR_TOKEN"] = _read_instance_file(app, "operator_token")

    load_all_models()
    logs.init_app(app)
    database = db.init_app(app)
    wakeup.init_app(app, database.Session)  # rings the workers after a commit that queued work
    loaded = catalog.init_app(app)
    log_sources_without_card(database.Session, loaded)
    # Webhook events of every source change, announced in the change's transaction as it commits.
    lifecycle.watch(database.Session, lambda: app.extensions[catalog.EXTENSION_KEY])
    oauth_apps.init_app(app, loaded)  # after the catalog: the apps file names source types
    crypto.init_app(app)
    secrets_store.verify_keys(app)  # a wrong or missing key stops start-up here
    connectors.init_app(app)  # after db and crypto: the network policy and one connector per kind
    policy = network_policy(app)
    # Deliveries go through the network policy's pinned session, endpoints are judged by its rules.
    webhooks.init_app(app, http_session=policy.http_session,
                      address_allowed=lambda address, port: policy.address_problem(address, port) is None,
                      refused_errors=(DestinationRefused,))
    auth.init_app(app)
    ratelimit.init_app(app)  # after auth: it counts by g.principal
    request_checks.init_app(app)  # before the blueprints: it sets the <int:…> converter
    security_headers.init_app(app)
    wiring.install(app, wire(connectors.get_connectors(app)))
    _register_blueprints(app)
    register_error_handlers(app)
    airbyte.init_app(app)  # after the handlers: its paths answer errors in Airbyte's shape
    if app.config["EMBEDDED_WORKER"]:
        app.extensions["connect.worker"] = start_embedded_worker(app, wiring.services(app).jobs)
    return app


def wire(registry: connectors.Connectors) -> wiring.Services:
    """Who calls whom. Adding a periodic job is one line in ``periodic``."""
    return wiring.Services(
        source_hooks=SourceHooks(
            # POST/PUT /v4/sources with secret_id: the OAuth handshake's result fills the source.
            redeem_secret=redeem_secret,
            # The last credential arrived, or one changed: queue a connection check and discovery.
            after_properties_changed=(queue_check_when_ready,),
            # Hosts and ports the properties name, judged by the network rules at save time.
            destinations=registry.destination_problems,
            # DELETE: revoke the source's tokens where its card's oauth section says (RFC 7009).
            before_delete=revoke_source_tokens,
        ),
        jobs=JobTable(
            handlers={CHECK_JOB: check_and_discover},
            # Webhook deliveries keep their own rows, claims and retry schedule (app/webhooks/delivery.py).
            pumps=(run_deliveries,),
            periodic=(
                PeriodicJob("purge_expired_handshakes", timedelta(hours=1), purge_expired_handshakes),
                PeriodicJob("purge_expired_connect_sessions", timedelta(hours=1), purge_expired_sessions),
                PeriodicJob("prune_webhook_history", timedelta(hours=6), prune_history_job),
                PeriodicJob("recheck_connected_sources", RECHECK_EVERY, recheck_connected_sources),
                PeriodicJob("keep_tokens_alive", KEEPALIVE_EVERY, keep_tokens_alive),
            ),
        ),
    )


def _register_blueprints(app: Flask) -> None:
    from .accounts.routes import blueprint as accounts
    from .airbyte.routes import embedded as airbyte_embedded
    from .airbyte.routes import public as airbyte_public
    from .connect.routes import blueprint as connect_sessions
    from .connect.routes import page as connect_page
    from .discovery.routes import blueprint as streams
    from .docs import blueprint as docs_assets
    from .execute.routes import blueprint as execute
    from .health import blueprint as health
    from .oauth.routes import blueprint as oauth_routes
    from .source_types.routes import blueprint as source_types
    from .sources.routes import blueprint as sources
    from .webhooks.routes import blueprint as webhook_routes

    api = create_api(app)
    for blueprint in (accounts, source_types, sources, streams, oauth_routes, connect_sessions, webhook_routes,
                      airbyte_embedded, airbyte_public, execute):
        api.register_blueprint(blueprint)
    app.register_blueprint(health)
    app.register_blueprint(connect_page)
    app.register_blueprint(docs_assets)


def _instance_path() -> Path:
    # The repository's instance/ folder, also when the package is installed in editable mode.
    return Path(__file__).resolve().parent.parent / "instance"


def _read_instance_file(app: Flask, name: str) -> str | None:
    path = Path(app.instance_path) / name
    return path.read_text().strip() if path.exists() else None
