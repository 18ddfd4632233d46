"""The ``http`` connector: a source reached through its own API, as its card's declarative ``auth``
and ``api`` sections describe (app/connectors/http.py sends the requests).

Check: the card's ``api.check`` request must answer 2xx with data. Discovery: each of the card's
``api.streams`` is asked for its first page; a 403/404 makes that stream ``unsupported`` (the
credentials cannot read it) rather than failing the check. The streams' schemas and keys come
from the card.

Who can fix a failure (``ConnectorFailure.fixed_by``):

* user — 401/403 on the check, another 4xx, the token or login endpoint refusing the
  credentials (the token store has marked the source broken and said why), an address the
  network rules refuse;
* time — 408, 429, 5xx (honouring ``Retry-After``), timeouts and connection errors, no token for
  now (never sooner than the token store's next attempt), and a 2xx that is not data: an HTML
  maintenance or sign-in page, or JSON cut short;
* operator — a card that cannot produce the request.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import requests
from sqlalchemy.orm import Session, sessionmaker

from ..catalog.cards import ReportCard
from ..catalog.frozen import thaw
from ..catalog.sections import ApiSection, RequestSpec, StreamSpec
from ..crypto import Keyring
from ..errors import Problem
from ..models import utcnow
from ..templating import TemplateProblem
from .base import Availability, ConnectorFailure, DiscoveredStream, SourceTarget
from .context import context_of
from .errors import AuthConfigurationError, CredentialsRejected, TokenUnavailable
from .http import send_rendered_request
from .network import DestinationRefused
from .tokens import TokenSettings
from .urls import render_url

UNSUPPORTED_STATUSES = (403, 404)
_PROPERTY_REFERENCE = re.compile(r"properties\.([A-Za-z_][A-Za-z0-9_$]*)")


def discovered_metadata(spec: StreamSpec, supported: bool) -> list[dict[str, Any]]:
    """Singer metadata for one stream of a card's ``api.streams`` as discovery saw it."""
    keys = list(spec.key_properties)
    replication_keys = list(spec.valid_replication_keys)
    stream_level: dict[str, Any] = {
        "inclusion": "available" if supported else "unsupported",
        "selected-by-default": spec.selected_by_default and supported,
        "table-key-properties": keys,
        "valid-replication-keys": replication_keys,
    }
    if spec.forced_replication_method:
        stream_level["forced-replication-method"] = spec.forced_replication_method
    entries: list[dict[str, Any]] = [{"breadcrumb": [], "metadata": stream_level}]
    for field in spec.schema.get("properties", {}):
        if not supported:
            inclusion = "unsupported"
        elif field in keys or field in replication_keys:
            inclusion = "automatic"
        else:
            inclusion = "available"
        entries.append({"breadcrumb": ["properties", field],
                        "metadata": {"inclusion": inclusion, "selected-by-default": inclusion != "unsupported"}})
    return entries


def _retry_after(response: requests.Response) -> float | None:
    try:
        return float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None


def _unreadable_body(response: requests.Response) -> str | None:
    """What is wrong with a 2xx body that cannot be the API's data, if anything."""
    content_type = response.headers.get("Content-Type", "").lower()
    if "html" in content_type:
        return "an HTML page instead of data"
    if "json" in content_type and response.content.strip():
        try:
            response.json()
        except ValueError:
            return "JSON that does not parse (cut short?)"
    return None


def judge(response: requests.Response, what: str) -> None:
    """Raise :class:`ConnectorFailure` unless the response is a success with data."""
    status = response.status_code
    if 200 <= status < 300:
        problem = _unreadable_body(response)
        if problem:
            raise ConnectorFailure("unexpected_response", f"{what}: the API answered {status} with {problem}",
                                   fixed_by="time")
        return
    if status == 429 or status >= 500 or status == 408:
        raise ConnectorFailure("source_unavailable", f"{what}: the API answered {status}", fixed_by="time",
                               retry_after=_retry_after(response))
    if status in (401, 403):
        raise ConnectorFailure("credentials_rejected", f"{what}: the API refused the credentials ({status})",
                               fixed_by="user")
    raise ConnectorFailure("check_failed", f"{what}: the API answered {status}", fixed_by="user")


@contextmanager
def _as_connector_failures() -> Iterator[None]:
    """The http layer's exceptions as :class:`ConnectorFailure`, sorted by who can fix them."""
    try:
        yield
    except CredentialsRejected as rejected:  # the token store has marked the source broken already
        raise ConnectorFailure(rejected.reason.get("type", "credentials_rejected"), str(rejected),
                               fixed_by="user", broken_reason=rejected.reason) from None
    except AuthConfigurationError as error:
        raise ConnectorFailure("configuration_error", str(error), fixed_by="operator") from None
    except DestinationRefused as refused:
        raise ConnectorFailure("destination_refused", refused.message, fixed_by="user") from None
    except TokenUnavailable as error:
        wait = None if error.retry_at is None else max(0.0, (error.retry_at - utcnow()).total_seconds())
        raise ConnectorFailure("source_unavailable", f"no token from the token endpoint for now ({error.error})",
                               fixed_by="time", retry_after=wait) from None
    except requests.RequestException as error:
        raise ConnectorFailure("source_unavailable",
                               f"{type(error).__name__}: the API or its token endpoint is unreachable",
                               fixed_by="time") from None


class HttpConnector:
    """Checks and discovers a source through its card's ``auth`` and ``api`` sections."""

    kind = "http"

    def __init__(self, session_factory: sessionmaker[Session], keyring: Keyring, settings: TokenSettings) -> None:
        self.session_factory = session_factory
        self.keyring = keyring
        self.settings = settings

    def availability(self, card: ReportCard) -> Availability:
        if card.api is None:
            return Availability(False, f"source type {card.type} has no api section: this deployment cannot "
                                       "check it yet")
        return Availability(True)

    def check(self, target: SourceTarget) -> None:
        judge(self._send(target, self._api(target.card).check), "check")

    def discover(self, target: SourceTarget) -> list[DiscoveredStream]:
        found = []
        for spec in self._api(target.card).streams:
            response = self._send(target, spec.request)
            supported = response.status_code not in UNSUPPORTED_STATUSES
            if supported:
                judge(response, f"stream {spec.tap_stream_id}")
            found.append(DiscoveredStream(
                tap_stream_id=spec.tap_stream_id, stream_name=spec.stream_name or spec.tap_stream_id,
                schema=thaw(spec.schema), metadata=tuple(discovered_metadata(spec, supported))))
        return found

    def destination_problems(self, card: ReportCard, properties: Mapping[str, Any]) -> list[Problem]:
        """A literal address in the rendered ``base_url`` that the network rules refuse (a name is
        judged when the check resolves it). Properties the template lacks: nothing to judge yet."""
        if card.api is None:
            return []
        base_url = card.api.base_url
        plain = {name: value for name, value in properties.items() if isinstance(value, str | int | float)}
        try:
            parts = urlsplit(render_url(base_url, {"properties": plain, "account": {"id": 0},
                                                   "source": {"id": 0, "name": ""}}))
            host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
        except (TemplateProblem, ValueError):  # UrlValueRefused too: Connectors.destination_problems names it
            return []
        problem = self.settings.network.literal_problem(host, port) if host else None
        if problem is None:
            return []
        names = [n for n in dict.fromkeys(_PROPERTY_REFERENCE.findall(base_url)) if n in card.properties] or ["host"]
        return [Problem.of_property(name, f"connections to {host} are refused: {problem}") for name in names]

    def _api(self, card: ReportCard) -> ApiSection:
        if card.api is None:
            raise ConnectorFailure("not_checkable", self.availability(card).reason or "", fixed_by="operator")
        return card.api

    def _send(self, target: SourceTarget, spec: RequestSpec) -> requests.Response:
        context = context_of(target.card, target.properties, target.account_id, target.source_id, target.name)
        with _as_connector_failures():
            return send_rendered_request(self.session_factory, self.keyring, target.card, target.source_id,
                                         context, spec, self.settings)
