"""Every setting of the service, read from ``CONNECT_*`` environment variables.

The README has the same table for operators; keep the two in step. Nothing here opens a file or a
database: :func:`settings_from_environment` only reads strings, and ``create_app`` decides what to
do with them.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REPORT_CARDS = PROJECT_ROOT / "report_cards"

# (environment variable, config key, default, converter, description)
SETTINGS: list[tuple[str, str, object, type, str]] = [
    ("CONNECT_DATABASE_URL", "DATABASE_URL", None, str,
     "SQLAlchemy URL. Default: SQLite file `instance/connect.db`."),
    ("CONNECT_OPERATOR_TOKEN", "OPERATOR_TOKEN", None, str,
     "Operator bearer token. Default: generated into `instance/operator_token` by `make run`."),
    ("CONNECT_REPORT_CARDS", "REPORT_CARDS", str(DEFAULT_REPORT_CARDS), str,
     "Report card folders, `os.pathsep`-separated; later folders win on the same `type`."),
    ("CONNECT_ENCRYPTION_KEYS", "ENCRYPTION_KEYS", None, str,
     "Comma-separated `key_id:base64key` AES-256-GCM keys; the first encrypts, all decrypt. "
     "Default: generated into `instance/encryption_keys` by `make run`."),
    ("CONNECT_PUBLIC_URL", "PUBLIC_URL", "http://127.0.0.1:8000", str,
     "Public base URL of the service (OAuth callback, connect page links)."),
    ("CONNECT_OAUTH_APPS", "OAUTH_APPS", None, str,
     "Path of a JSON file of operator-wide OAuth apps, read at start-up: "
     "`{\"<source_type>\": {\"client_id\": …, \"client_secret\": …, \"scopes\": [optional]}}`. "
     "An operator app set with `PUT /v4/oauth/credentials` wins over the file's entry for the same "
     "type. A bad file stops start-up. Keep it readable by the service only."),
    ("CONNECT_ALLOWED_DEPRECATED_TYPES", "ALLOWED_DEPRECATED_TYPES", "", str,
     "Source types whose card says `details.access: false` (deprecated, alpha) that accounts may "
     "create anyway: comma-separated types, or `*` for all. Others get 403 `access_denied`."),
    ("CONNECT_SECRET_TTL", "SECRET_TTL", 600, int,
     "Seconds a `secret_id` from the OAuth callback stays usable."),
    ("CONNECT_MAX_BODY_BYTES", "MAX_CONTENT_LENGTH", 1_048_576, int,
     "Largest request body accepted; larger ones get 413."),
    ("CONNECT_LOG_LEVEL", "LOG_LEVEL", "INFO", str, "Log level of the JSON log lines."),
    ("CONNECT_TOKEN_CACHE_SECONDS", "TOKEN_CACHE_SECONDS", 5.0, float,
     "Seconds each process remembers an account token it has looked up, so a request needs no "
     "token query; 0 turns it off. A revoked token stops working at once in the process that "
     "revoked it, and within this many seconds in the others."),
    ("CONNECT_TOKEN_REFRESH_MARGIN", "TOKEN_REFRESH_MARGIN", 300, int,
     "Seconds before expiry at which an access token is refreshed."),
    ("CONNECT_HTTP_TIMEOUT", "HTTP_TIMEOUT", 20.0, float,
     "Seconds to wait for a provider or source API before giving up."),
    ("CONNECT_ALLOWED_SOURCE_NETWORKS", "ALLOWED_SOURCE_NETWORKS", "", str,
     "Comma-separated CIDRs of private, loopback, CGNAT or unique-local networks that sources (APIs, "
     "token endpoints, databases) may be reached in, such as `10.0.0.0/8,127.0.0.0/8,::1/128`. Empty: "
     "only public addresses. Link-local and cloud metadata addresses and the service's own database are "
     "refused whatever this says."),
    ("CONNECT_EMBEDDED_WORKER", "EMBEDDED_WORKER", False, bool,
     "Run a job worker thread inside the API process (set by `make run`)."),
    ("CONNECT_JOB_LEASE_SECONDS", "JOB_LEASE_SECONDS", 60, int,
     "Seconds a worker holds a job without renewing; a dead worker's job is taken over after this."),
    ("CONNECT_WEBHOOK_TIMEOUT", "WEBHOOK_TIMEOUT", 10.0, float,
     "Seconds a webhook endpoint has to answer one delivery attempt (connect and read)."),
    ("CONNECT_WEBHOOK_RETRY_HOURS", "WEBHOOK_RETRY_HOURS", 24.0, float,
     "Hours a failing webhook delivery is retried (exponential back-off with jitter) before it is "
     "marked failed."),
    ("CONNECT_WEBHOOK_ALLOW_LOOPBACK", "WEBHOOK_ALLOW_LOOPBACK", False, bool,
     "Accept webhook URLs on a loopback host (127.0.0.1, ::1, localhost), over http too: for a "
     "developer's machine and tests. Off, every webhook URL must be https to a public host."),
    ("CONNECT_WEBHOOK_RETENTION_DAYS", "WEBHOOK_RETENTION_DAYS", 30, int,
     "Days finished webhook deliveries (and their events) are kept for `GET /v4/webhooks/{id}/deliveries`."),
    ("CONNECT_RECHECK_HOURS", "RECHECK_HOURS", 0.0, float,
     "Hours after which a connected source's connection is checked again by a periodic job (the "
     "source turns `broken`, and the webhooks hear of it, when its credentials stopped working); "
     "0 turns the re-checks off."),
    ("CONNECT_RECHECK_BATCH", "RECHECK_BATCH", 10, int,
     "Most re-checks queued per run of the re-check job (every 5 minutes), spread over that run's "
     "5 minutes: what bounds how many run at once."),
    ("CONNECT_TOKEN_KEEPALIVE_HOURS", "TOKEN_KEEPALIVE_HOURS", 24.0, float,
     "Hours a source's refresh token may go unused before a periodic job refreshes it, so tokens "
     "that lapse when idle stay alive; 0 turns keep-alive off."),
    ("CONNECT_TAPS_DIR", "TAPS_DIR", None, str,
     "Directory of the operator-installed Singer taps (one virtual environment per source type, "
     "`flask connect taps install`). Default: `instance/taps/`."),
    ("CONNECT_TAP_TIMEOUT", "TAP_TIMEOUT", 300.0, float,
     "Seconds a tap's check or discovery may run before its process group is killed (a card's "
     "`singer.limits.timeout_seconds` wins)."),
    ("CONNECT_TAP_MAX_OUTPUT_BYTES", "TAP_MAX_OUTPUT_BYTES", 67_108_864, int,
     "Most bytes read from a tap's stdout; past it the tap is killed and the check fails."),
    ("CONNECT_TAP_MAX_MEMORY_MB", "TAP_MAX_MEMORY_MB", 2048, int,
     "Address-space limit (RLIMIT_AS) of a tap process, in MiB; 0 turns it off."),
    ("CONNECT_TAP_USER_AGENT", "TAP_USER_AGENT", "connect (Singer tap runner)", str,
     "The `user_agent` every tap is given (as Stitch gives its taps one; many require it), unless a "
     "source or card sets its own. Providers see it: name your deployment and a contact."),
    ("CONNECT_RATE_LIMIT", "RATE_LIMIT", "", str,
     "Per-account rate limit of the `/v4` API such as `100/minute` or `10/second;1000/hour` "
     "(429 with Retry-After over it; the operator token is not limited); empty turns it off."),
    ("CONNECT_SOURCE_ANSWER_MAX_BYTES", "SOURCE_ANSWER_MAX_BYTES", 10_485_760, int,
     "Largest answer of a source's API that execute and the proxy read; a longer one is refused "
     "(424 `response_too_large`) and not read on."),
    ("CONNECT_PROXY_ENABLED", "PROXY_ENABLED", True, bool,
     "Serve `/v4/sources/{id}/proxy/<path>` (calls to a source's API with its stored credentials); "
     "off, every proxy call gets 403 `proxy_disabled`. A card can turn its own type's proxy off."),
    ("CONNECT_RATE_LIMIT_STORAGE_URI", "RATE_LIMIT_STORAGE_URI", "memory://", str,
     "Where rate-limit counters live. `memory://` counts per process, so with several gunicorn "
     "workers an account can make up to workers × the limit; a shared store such as "
     "`redis://host:6379` (needs the `redis` package) makes the limit exact."),
]


def _convert(raw: str, kind: type) -> object:
    if kind is bool:
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    return kind(raw)


def settings_from_environment(environ: os._Environ[str] | dict[str, str] | None = None) -> dict:
    """The service's settings: documented defaults overridden by ``CONNECT_*`` variables."""
    environ = os.environ if environ is None else environ
    settings: dict[str, object] = {}
    for variable, key, default, kind, _ in SETTINGS:
        raw = environ.get(variable)
        settings[key] = default if raw in (None, "") else _convert(raw, kind)
    return settings


def default_database_url(instance_path: str) -> str:
    return f"sqlite:///{Path(instance_path) / 'connect.db'}"
