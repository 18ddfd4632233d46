"""Execute: ``{entity, action, params}`` on a configured source, answered as Airbyte's embedded API
answers ``POST /connectors/sources/{id}/execute``: ``{result, connector_metadata: {pagination:
{cursor}}}``.

* ``entity`` is one of the source's discovered streams (its ``tap_stream_id``); ``action`` is
  ``list`` (params ``limit``, 1 to :data:`MAX_PAGE_SIZE`, default :data:`DEFAULT_LIMIT`, and
  ``cursor``, the previous answer's) or ``get`` (params: the stream's key fields).
* Field selection holds here as for a pipeline: a stream that is not selected is 403
  ``not_selected``; a record carries only the selected fields, key fields always.
* The cursor is opaque and tamper-evident: the connector's position, signed (itsdangerous, with a
  key derived from the service's primary encryption key) for this source, its configuration
  generation and the entity; another source's, an altered or an outdated one is 422
  ``params.cursor``.
* The source's connector is called outside any transaction; the audit event
  (``source_executed``: entity, action, status, duration, count) is written after it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..catalog import Catalog, get_catalog
from ..connectors.base import ConnectorFailure, ReadsRecords, RecordQuery, SourceTarget
from ..connectors.registry import Connectors, get_connectors
from ..crypto import Keyring, get_keyring
from ..discovery.catalog import merged_metadata
from ..discovery.models import Stream
from ..errors import AccessDenied, Conflict, Invalid, NotFound, Problem
from .outcomes import Audit, api_error, audited, target_of, usable_source
from .schemas import DEFAULT_LIMIT, MAX_PAGE_SIZE

ACTIONS = ("list", "get")
LIST_PARAMS = ("limit", "cursor")
CURSOR_PURPOSE = "execute-cursor"


@dataclass(frozen=True)
class Operation:
    entity: str
    action: str
    params: Mapping[str, Any]


@dataclass(frozen=True)
class StreamFacts:
    """What execute needs of a stream row, read in the request's one read transaction."""

    tap_stream_id: str
    stream_name: str
    selected: bool
    stream_metadata: Mapping[str, Any]
    key_properties: tuple[str, ...]
    fields: tuple[str, ...]
    key_types: Mapping[str, Any]  # each key field's JSON Schema ``type``
    sortable: tuple[str, ...]

    @classmethod
    def of(cls, stream: Stream) -> StreamFacts:
        merged = merged_metadata(stream.discovered_metadata, stream.selections)
        level = next(e["metadata"] for e in merged if e["breadcrumb"] == [])
        keys = tuple(level.get("table-key-properties") or ())
        chosen = [e["breadcrumb"][1] for e in merged if len(e["breadcrumb"]) == 2 and e["metadata"]["selected"]]
        properties = (stream.schema or {}).get("properties", {})
        fields = tuple(dict.fromkeys([*keys, *chosen]))
        sortable = tuple(name for name in fields
                         if not _types(properties.get(name, {}).get("type")) & {"object", "array"})
        return cls(stream.tap_stream_id, stream.stream_name, stream.selected, level, keys, fields,
                   {k: properties.get(k, {}).get("type") for k in keys}, sortable)


def parse_operation(body: Any) -> Operation:
    """The body's operation, or 422 naming every field that is wrong."""
    if not isinstance(body, Mapping):
        raise Invalid.from_problems([Problem("body", "must be an object {entity, action, params}")])
    problems = [Problem(name, "unknown field (fields: entity, action, params)")
                for name in body if name not in ("entity", "action", "params")]
    entity, action, params = body.get("entity"), body.get("action"), body.get("params", {})
    if not isinstance(entity, str) or not entity:
        problems.append(Problem("entity", "required: the tap_stream_id of one of the source's streams"))
    if action not in ACTIONS:
        problems.append(Problem("action", f"must be one of {', '.join(ACTIONS)}"))
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        problems.append(Problem("params", "must be an object"))
    if problems:
        raise Invalid.from_problems(problems)
    return Operation(str(entity), str(action), params)


def execute_operation(session: Session, account_id: int, source_id: int, body: Mapping[str, Any]) -> dict[str, Any]:
    """Execute ``body`` on the account's source, with this app's catalog, connectors and keys (in
    an app context). Call it outside any transaction of ``session``: it reads in one, calls the
    source outside any, and writes the audit event in a third. Raises the app's errors (NotFound,
    Conflict ``not_ready``, AccessDenied ``not_selected``, Invalid naming the field, ApiError 424/429)."""
    return execute(session, get_catalog(), get_connectors(), get_keyring(), account_id, source_id, body)


def execute(session: Session, catalog: Catalog, connectors: Connectors, keyring: Keyring, account_id: int,
            source_id: int, body: Mapping[str, Any]) -> dict[str, Any]:
    operation = parse_operation(body)
    with session.begin():
        usable = usable_source(session, catalog, account_id, source_id)
        row = session.scalars(select(Stream).where(Stream.source_id == source_id,
                                                   Stream.tap_stream_id == operation.entity)).one_or_none()
        stream = None if row is None else StreamFacts.of(row)
        target = target_of(keyring, usable)
    card = usable.card
    connector = connectors.for_card(card)
    if not isinstance(connector, ReadsRecords):
        raise Conflict(f"sources of type {card.type} cannot execute operations in this deployment",
                       type="execute_not_supported")
    audit = Audit("source_executed", {"entity": operation.entity[:255], "action": operation.action})
    with audited(session, source_id, audit):
        if stream is None:
            raise Invalid.from_problems([Problem("entity", f"the source has no stream {operation.entity!r} "
                                                           "(GET /v4/sources/{id}/streams lists them)")])
        if not stream.selected:
            raise AccessDenied(f"stream {stream.tap_stream_id} is not selected: the source's user has not chosen "
                               "to share it", type="not_selected")
        signer = _signer(keyring, source_id, target.config_generation, stream.tap_stream_id)
        result, following = _run(connector, target, stream, operation, signer)
        audit.detail["records"] = len(result) if isinstance(result, list) else int(result is not None)
    return {"result": result, "connector_metadata": {"pagination": {"cursor": following}}}


def _run(connector: ReadsRecords, target: SourceTarget, stream: StreamFacts, operation: Operation,
         signer: URLSafeSerializer) -> tuple[Any, str | None]:
    try:
        if operation.action == "list":
            page = connector.list_records(target, _list_query(stream, operation.params, signer))
            following = None if page.next_position is None else signer.dumps(dict(page.next_position))
            return [_only_selected(record, stream.fields) for record in page.records], following
        record = connector.get_record(target, _get_query(stream, operation.params))
    except ConnectorFailure as failure:
        raise api_error(failure) from None
    if record is None:
        raise NotFound(f"no record of {stream.tap_stream_id} has that key", type="record_not_found")
    return _only_selected(record, stream.fields), None


def _query(stream: StreamFacts, **values: Any) -> RecordQuery:
    return RecordQuery(tap_stream_id=stream.tap_stream_id, stream_name=stream.stream_name,
                       stream_metadata=stream.stream_metadata, key_properties=stream.key_properties,
                       fields=stream.fields, sortable=stream.sortable, **values)


def _list_query(stream: StreamFacts, params: Mapping[str, Any], signer: URLSafeSerializer) -> RecordQuery:
    problems = [Problem(f"params.{name}", f"unknown parameter of list (parameters: {', '.join(LIST_PARAMS)})")
                for name in params if name not in LIST_PARAMS]
    limit = params.get("limit", DEFAULT_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        problems.append(Problem("params.limit", f"must be an integer from 1 to {MAX_PAGE_SIZE}"))
    position = None
    cursor = params.get("cursor")
    if cursor is not None:
        try:
            position = signer.loads(cursor) if isinstance(cursor, str) else None
        except BadSignature:
            position = None
        if not isinstance(position, dict):
            problems.append(Problem("params.cursor", "not a cursor this source and entity gave (altered, or "
                                                     "from before the source's configuration changed)"))
    if problems:
        raise Invalid.from_problems(problems)
    return _query(stream, limit=limit, position=position)


def _get_query(stream: StreamFacts, params: Mapping[str, Any]) -> RecordQuery:
    if not stream.key_properties:
        raise Invalid.from_problems([Problem("action", f"stream {stream.tap_stream_id} has no key: use list")])
    problems = [Problem(f"params.{name}", f"unknown parameter of get (the key: {', '.join(stream.key_properties)})")
                for name in params if name not in stream.key_properties]
    key = {}
    for name in stream.key_properties:
        value = _key_value(params.get(name), stream.key_types.get(name))
        if value is None:
            problems.append(Problem(f"params.{name}", f"required: the record's key value ({_kind(stream, name)})"))
        key[name] = value
    if problems:
        raise Invalid.from_problems(problems)
    return _query(stream, key=key)


def _types(schema_type: Any) -> set[str]:
    return {schema_type} if isinstance(schema_type, str) else set(schema_type or ())


def _kind(stream: StreamFacts, name: str) -> str:
    types = _types(stream.key_types.get(name))
    return "an integer" if "integer" in types else "a number" if "number" in types else "a string or a number"


def _key_value(value: Any, schema_type: Any) -> Any:
    """A key value fit for its field's type (a numeric key given as digits is a number), else None."""
    types = _types(schema_type)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    if "integer" in types and "string" not in types:
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        return value if isinstance(value, int) else None
    if "number" in types and "string" not in types:
        try:
            return float(value) if isinstance(value, str) else value
        except ValueError:
            return None
    return str(value) if "string" in types else value


def _only_selected(record: Mapping[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    return {name: record[name] for name in fields if name in record}


def _signer(keyring: Keyring, source_id: int, generation: int, entity: str) -> URLSafeSerializer:
    return URLSafeSerializer(keyring.derived_key(CURSOR_PURPOSE), salt=f"{source_id}:{generation}:{entity}")

