"""The connect service: ``create_app()`` builds it (config, extensions, blueprints, error handlers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask

from . import (
    auth,
    catalog,
    crypto,
    db,
    discovery,
    logs,
    oauth,
    ratelimit,
    request_checks,
    secrets_store,
    security_headers,
    webhooks,
)
from .config import default_database_url, settings_from_environment
from .connectors import registry as connectors
from .errors import register_error_handlers
from .extensions import API_SETTINGS, create_api
from .models import load_all_models
from .sources.availability import log_sources_without_card


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
    loaded = catalog.init_app(app)
    log_sources_without_card(database.Session, loaded)
    oauth.init_app(app)
    discovery.init_app(app)
    crypto.init_app(app)
    secrets_store.verify_keys(app)  # a wrong or missing key stops start-up here
    connectors.init_app(app)  # after db and crypto: the network policy and one connector per kind
    webhooks.init_app(app)
    auth.init_app(app)
    ratelimit.init_app(app)  # after auth: it counts by g.principal
    request_checks.init_app(app)  # before the blueprints: it sets the <int:…> converter
    security_headers.init_app(app)

    api = create_api(app)
    from .accounts.routes import blueprint as accounts
    from .connect.routes import blueprint as connect_sessions
    from .connect.routes import page as connect_page
    from .discovery.routes import blueprint as streams
    from .docs import blueprint as docs_assets
    from .health import blueprint as health
    from .oauth.routes import blueprint as oauth_routes
    from .source_types.routes import blueprint as source_types
    from .sources.routes import blueprint as sources
    from .webhooks.routes import blueprint as webhook_routes

    for blueprint in (accounts, source_types, sources, streams, oauth_routes, connect_sessions, webhook_routes):
        api.register_blueprint(blueprint)
    app.register_blueprint(health)
    app.register_blueprint(connect_page)
    app.register_blueprint(docs_assets)
    register_error_handlers(app)
    if app.config["EMBEDDED_WORKER"]:
        from .jobs.worker import start_embedded_worker

        app.extensions["connect.worker"] = start_embedded_worker(app)
    return app


def _instance_path() -> Path:
    # The repository's instance/ folder, also when the package is installed in editable mode.
    return Path(__file__).resolve().parent.parent / "instance"


def _read_instance_file(app: Flask, name: str) -> str | None:
    path = Path(app.instance_path) / name
    return path.read_text().strip() if path.exists() else None
