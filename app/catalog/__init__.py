"""The catalog of source types: report card files loaded, validated and kept in memory."""

from flask import Flask, current_app

from .access import AccessPolicy
from .cards import ReportCard
from .loader import Catalog, CatalogError, load_catalog

EXTENSION_KEY = "connect.catalog"


def init_app(app: Flask) -> Catalog:
    catalog = load_catalog(app.config["REPORT_CARDS"],
                           AccessPolicy.from_setting(app.config.get("ALLOWED_DEPRECATED_TYPES")))
    app.extensions[EXTENSION_KEY] = catalog
    app.logger.info(
        "catalog loaded",
        extra={"source_types": len(catalog), "managed_oauth": catalog.managed_oauth_count,
               "load_ms": round(catalog.load_seconds * 1000, 1)},
    )
    return catalog


def get_catalog() -> Catalog:
    catalog: Catalog = current_app.extensions[EXTENSION_KEY]
    return catalog


__all__ = ["Catalog", "CatalogError", "ReportCard", "get_catalog", "init_app", "load_catalog"]
