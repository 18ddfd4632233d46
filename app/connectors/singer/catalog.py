"""A tap's Singer catalog read into :class:`DiscoveredStream`\\ s, and the hand-off back to a tap.

Reading (:func:`parse_catalog`): the catalog is ``{"streams": [{"tap_stream_id", "stream"?,
"schema", "metadata"?, …}]}``. The tap's metadata is kept as it is. A stream without metadata
(older taps) gets what Singer's own ``get_standard_metadata`` would give it: a stream-level entry
(with ``table-key-properties`` from ``key_properties``) and an ``available`` entry per top-level
field; a stream whose metadata lacks the stream-level entry gets an empty one, since selection
needs it. Anything that is not a catalog raises :class:`CatalogInvalid` saying what is wrong.

The hand-off (:func:`selected_catalog`): the stored streams with the user's selections written into
their metadata — the effective ``selected`` on every breadcrumb (app/discovery/catalog.py holds
the one rule) plus ``replication-method`` and ``replication-key`` where the user chose them —
which is exactly what ``tap --config … --catalog …`` takes. The tap's other keys of each entry
(``extra``: ``table_name``, ``replication_method`` …) go back as the tap wrote them, except that
the user's replication choices replace ``replication_method`` / ``replication_key``; some taps
(meltanolabs-tap-postgres) refuse a catalog without them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..base import DiscoveredStream

# The keys of a catalog entry a DiscoveredStream holds in fields of its own; any other key of the
# tap's entry is kept in ``extra`` and handed back.
STANDARD_KEYS = ("tap_stream_id", "stream", "schema", "metadata")


class CatalogInvalid(ValueError):
    """What the tap printed is not a Singer catalog (the reason says where)."""


def catalog_document(output: bytes) -> Any:
    """The JSON document a ``--discover`` run printed. Most taps print only the catalog; a few print
    a log line first, so the document may also start at the first line that opens an object."""
    text = output.decode("utf-8", "replace").strip()
    if not text:
        raise CatalogInvalid("the tap printed nothing on stdout")
    try:
        return json.loads(text)
    except ValueError:
        pass
    start = text.find("\n{")
    if text.startswith("{") or start >= 0:
        try:
            document, _ = json.JSONDecoder().raw_decode(text[0 if text.startswith("{") else start + 1:])
            return document
        except ValueError:
            pass
    raise CatalogInvalid("the tap's output is not JSON")


def parse_catalog(document: Any) -> list[DiscoveredStream]:
    if not isinstance(document, Mapping) or not isinstance(document.get("streams"), list):
        raise CatalogInvalid("not a catalog: no \"streams\" list")
    found: list[DiscoveredStream] = []
    seen: set[str] = set()
    for index, entry in enumerate(document["streams"]):
        stream = _stream(entry, f"streams[{index}]")
        if stream.tap_stream_id in seen:
            raise CatalogInvalid(f"streams[{index}].tap_stream_id: {stream.tap_stream_id!r} appears twice")
        seen.add(stream.tap_stream_id)
        found.append(stream)
    return found


def _stream(entry: Any, where: str) -> DiscoveredStream:
    if not isinstance(entry, Mapping):
        raise CatalogInvalid(f"{where}: a stream must be an object")
    tap_stream_id = entry.get("tap_stream_id")
    if not isinstance(tap_stream_id, str) or not tap_stream_id:
        raise CatalogInvalid(f"{where}.tap_stream_id: must be a non-empty string")
    schema = entry.get("schema")
    if not isinstance(schema, Mapping):
        raise CatalogInvalid(f"{where}.schema: must be a JSON Schema object")
    name = entry.get("stream", tap_stream_id)
    if not isinstance(name, str) or not name:
        raise CatalogInvalid(f"{where}.stream: must be a non-empty string")
    raw_metadata = entry.get("metadata")
    if raw_metadata is None or raw_metadata == []:
        metadata = standard_metadata(schema, entry.get("key_properties"))
    else:
        metadata = _metadata(raw_metadata, f"{where}.metadata")
    extra = {key: value for key, value in entry.items() if key not in STANDARD_KEYS}
    return DiscoveredStream(tap_stream_id=tap_stream_id, stream_name=name, schema=dict(schema),
                            metadata=tuple(metadata), extra=extra)


def _metadata(raw: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise CatalogInvalid(f"{where}: must be a list")
    entries = []
    for index, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise CatalogInvalid(f"{where}[{index}]: must be an object")
        breadcrumb, values = item.get("breadcrumb"), item.get("metadata")
        if not isinstance(breadcrumb, list) or not all(isinstance(part, str) for part in breadcrumb):
            raise CatalogInvalid(f"{where}[{index}].breadcrumb: must be a list of strings")
        if not isinstance(values, Mapping):
            raise CatalogInvalid(f"{where}[{index}].metadata: must be an object")
        entries.append({"breadcrumb": list(breadcrumb), "metadata": dict(values)})
    if not any(entry["breadcrumb"] == [] for entry in entries):
        entries.insert(0, {"breadcrumb": [], "metadata": {}})
    return entries


def standard_metadata(schema: Mapping[str, Any], key_properties: Any) -> list[dict[str, Any]]:
    keys = [k for k in key_properties or () if isinstance(k, str)] if isinstance(key_properties, list) else []
    entries: list[dict[str, Any]] = [{"breadcrumb": [], "metadata": {"table-key-properties": keys}}]
    properties = schema.get("properties")
    for field_name in properties if isinstance(properties, Mapping) else ():
        inclusion = "automatic" if field_name in keys else "available"
        entries.append({"breadcrumb": ["properties", field_name], "metadata": {"inclusion": inclusion}})
    return entries
