"""Start-up time, measured in a fresh interpreter: ``python -m bench.startup`` prints one JSON line.

``import_s`` is ``from app import create_app`` (the packages the service imports at module level);
``create_app_s`` is the call itself: config, logging, engine, the catalog (read, validate, compile,
serialise every report card), keyring, auth and the blueprints with their schemas. The catalog
folder comes from ``CONNECT_REPORT_CARDS`` as it does for the service.
"""

from __future__ import annotations

import json
import time


def main() -> None:
    started = time.perf_counter()
    from app import create_app

    imported = time.perf_counter()
    app = create_app({"LOG_LEVEL": "WARNING"})
    created = time.perf_counter()
    from app.catalog import get_catalog

    with app.app_context():
        catalog = get_catalog()
        print(json.dumps({
            "import_s": round(imported - started, 4),
            "create_app_s": round(created - imported, 4),
            "catalog_load_s": round(catalog.load_seconds, 4),
            "source_types": len(catalog),
        }), flush=True)


if __name__ == "__main__":
    main()
