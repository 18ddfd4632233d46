"""The hand-off to a pipeline: the stored streams with the user's selections written into their
Singer metadata — the catalog a tap takes with ``--catalog`` (``selected`` on every breadcrumb,
``replication-method`` / ``replication-key`` where chosen), and the tap's other catalog keys it
reported at discovery (``DiscoveredStream.extra``) kept, since some taps need them back."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .catalog import merged_metadata


@dataclass(frozen=True)
class StoredStream:
    """One stream as the service stores it (app/discovery/models.py:Stream): the discovered entry
    and the user's selections, ``{json(breadcrumb): {"selected"?, "replication-method"?, …}}``."""

    tap_stream_id: str
    stream_name: str
    schema: Mapping[str, Any]
    discovered_metadata: list[dict[str, Any]]
    selections: Mapping[str, Any]
    extra: Mapping[str, Any] = field(default_factory=dict)  # DiscoveredStream.extra


def selected_catalog(streams: Iterable[StoredStream]) -> dict[str, Any]:
    """The catalog to hand a tap (``--catalog``), the user's selections written in."""
    entries = []
    for stream in streams:
        metadata = merged_metadata(stream.discovered_metadata, stream.selections)
        stream_level = next(e["metadata"] for e in metadata if e["breadcrumb"] == [])
        entry: dict[str, Any] = {**stream.extra, "tap_stream_id": stream.tap_stream_id,
                                 "stream": stream.stream_name, "schema": dict(stream.schema), "metadata": metadata}
        keys = stream_level.get("table-key-properties")
        if isinstance(keys, list) and "key_properties" not in entry:
            entry["key_properties"] = keys
        if stream_level.get("replication-method"):
            entry["replication_method"] = stream_level["replication-method"]
        if stream_level.get("replication-key"):
            entry["replication_key"] = stream_level["replication-key"]
        entries.append(entry)
    return {"streams": entries}
