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
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from sqlalchemy.orm import Session, sessionmaker

from ..catalog.cards import ReportCard
from ..catalog.frozen import thaw
from ..catalog.sections import ApiSection, RequestSpec, StreamSpec
from ..crypto import Keyring
from ..errors import Problem
from ..models import utcnow
from ..templating import TemplateProblem
from . import http_records
from .base import Availability, ConnectorFailure, DiscoveredStream, RecordPage, RecordQuery, SourceTarget
from .context import context_of, rendered_url
from .errors import AuthConfigurationError, CredentialsRejected, ResponseTooLarge, TokenUnavailable
from .http import Verbatim, kept_session, send_rendered_request
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


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ConnectorFailure("unexpected_response", f"the API answered {response.status_code} with a body that is "
                               "not JSON", fixed_by="time") from None


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
    except ResponseTooLarge as error:
        raise ConnectorFailure("response_too_large", f"the API's answer is longer than {error.limit} bytes",
                               fixed_by="operator") from None
    except TokenUnavailable as error:
        wait = None if error.retry_at is None else max(0.0, (error.retry_at - utcnow()).total_seconds())
        raise ConnectorFailure("source_unavailable", f"no token from the token endpoint for now ({error.error})",
                               fixed_by="time", retry_after=wait) from None
    except requests.Timeout:
        raise ConnectorFailure("source_unavailable", "the API did not answer in time", fixed_by="time") from None
    except requests.RequestException as error:
        raise ConnectorFailure("source_unavailable",
                               f"{type(error).__name__}: the API or its token endpoint is unreachable",
                               fixed_by="time") from None


class HttpConnector:
    """Checks and discovers a source through its card's ``auth`` and ``api`` sections."""

    kind = "http"

    def __init__(self, session_factory: sessionmaker[Session], keyring: Keyring, settings: TokenSettings,
                 *, answer_limit: int = 10 * 1024 * 1024) -> None:
        self.session_factory = session_factory
        self.keyring = keyring
        self.settings = settings
        self.answer_limit = answer_limit  # bytes of one answer execute reads at most
        # Execute and the proxy reuse connections: one kept session per thread (requests sessions
        # are not meant to be shared across threads). Connections are vetted when opened, so a
        # reused one goes to the address that was vetted.
        self._kept = threading.local()

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

    # --- execute (app/execute/) ------------------------------------------------------------------------

    def list_records(self, target: SourceTarget, query: RecordQuery) -> RecordPage:
        """One page of the stream's request, paginated as the card says (http_records.py)."""
        spec = self._stream(target.card, query.tap_stream_id)
        context = self._context(target, {"limit": http_records.page_size(spec.pagination, query.limit)})
        base_url = self._base_url(target.card, context)
        verbatim = http_records.page_request(spec.pagination, query, base_url, max_bytes=self.answer_limit,
                                             deadline=self._deadline(target.card))
        response = self._send(target, spec.request, context, verbatim)
        judge(response, f"stream {spec.tap_stream_id}")
        body = _json(response)
        found = http_records.records_at(body, spec.records_path)
        following = http_records.next_position(spec.pagination, query, response, body, len(found), base_url)
        return RecordPage(found, following)

    def get_record(self, target: SourceTarget, query: RecordQuery) -> dict[str, Any] | None:
        spec = self._stream(target.card, query.tap_stream_id)
        if spec.get is None:
            raise ConnectorFailure("get_not_supported", f"stream {spec.tap_stream_id} cannot be read by key",
                                   fixed_by="operator")
        # Key values are data: quoted whole into the path, so "../x" or "a/b" stays one segment.
        keys = {name: quote(str(value), safe="") for name, value in (query.key or {}).items()}
        context = self._context(target, keys)
        verbatim = Verbatim(max_bytes=self.answer_limit, deadline=self._deadline(target.card))
        response = self._send(target, RequestSpec(path=spec.get.path, params=spec.get.params), context, verbatim)
        if response.status_code == 404:
            return None
        judge(response, f"stream {spec.tap_stream_id}")
        found = http_records.records_at(_json(response), spec.get.record_path)
        return found[0] if found else None

    def forward(self, target: SourceTarget, method: str, verbatim: Verbatim) -> requests.Response:
        """One proxied call (app/execute/proxy.py): ``verbatim`` holds the vetted URL, query, headers
        and body; the card's headers and authenticator are applied, and a 401 renews once."""
        return self._send(target, RequestSpec(method=method), None,
                          replace(verbatim, max_bytes=verbatim.max_bytes or self.answer_limit,
                                  deadline=verbatim.deadline or self._deadline(target.card)))

    def base_url(self, target: SourceTarget) -> str:
        """The card's ``base_url`` rendered for the source: where the proxy is pinned."""
        return self._base_url(target.card, self._context(target, {}))

    def _stream(self, card: ReportCard, tap_stream_id: str) -> StreamSpec:
        spec = next((s for s in self._api(card).streams if s.tap_stream_id == tap_stream_id), None)
        if spec is None:
            raise ConnectorFailure("unknown_stream", f"the card has no stream {tap_stream_id}", fixed_by="operator")
        return spec

    def _context(self, target: SourceTarget, params: Mapping[str, Any]) -> dict[str, Any]:
        return {**context_of(target.card, target.properties, target.account_id, target.source_id, target.name),
                "params": dict(params)}

    def _base_url(self, card: ReportCard, context: Mapping[str, Any]) -> str:
        with _as_connector_failures():
            return rendered_url(self._api(card).base_url, context, f"{card.type}: api.base_url")

    def _deadline(self, card: ReportCard) -> float:
        return (card.api.timeout_seconds if card.api else None) or self.settings.http_timeout

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

    def _send(self, target: SourceTarget, spec: RequestSpec, context: Mapping[str, Any] | None = None,
              verbatim: Verbatim | None = None) -> requests.Response:
        if context is None:
            context = context_of(target.card, target.properties, target.account_id, target.source_id, target.name)
        with _as_connector_failures():
            return send_rendered_request(self.session_factory, self.keyring, target.card, target.source_id,
                                         context, spec, self.settings, verbatim,
                                         None if verbatim is None else self._session())

    def _session(self) -> requests.Session:
        http: requests.Session | None = getattr(self._kept, "http", None)
        if http is None:
            http = self._kept.http = kept_session(self.settings)
        return http
