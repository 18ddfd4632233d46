"""Singer metadata from discovery and the one effective-selection rule, as pure functions."""

from __future__ import annotations

import pytest

from app.catalog.sections import parse_stream
from app.connectors.http_connector import discovered_metadata
from app.discovery.catalog import (
    breadcrumb_key,
    carry_selections,
    effective_selected,
    merged_metadata,
    selection_problems,
    stream_selected,
)

SPEC = parse_stream({
    "tap_stream_id": "contacts", "key_properties": ["id"], "valid_replication_keys": ["updated_at"],
    "schema": {"type": "object", "properties": {"id": {"type": "string"}, "updated_at": {"type": "string"},
                                                "email": {"type": "string"}}},
})


def by_breadcrumb(entries):
    return {tuple(e["breadcrumb"]): e["metadata"] for e in entries}


def test_discovered_metadata_marks_keys_automatic():
    entries = by_breadcrumb(discovered_metadata(SPEC, supported=True))
    assert entries[()]["table-key-properties"] == ["id"]
    assert entries[()]["valid-replication-keys"] == ["updated_at"]
    assert entries[()]["inclusion"] == "available"
    assert entries[("properties", "id")]["inclusion"] == "automatic"
    assert entries[("properties", "updated_at")]["inclusion"] == "automatic"
    assert entries[("properties", "email")]["inclusion"] == "available"


def test_an_unsupported_stream_has_unsupported_fields():
    entries = by_breadcrumb(discovered_metadata(SPEC, supported=False))
    assert {m["inclusion"] for m in entries.values()} == {"unsupported"}


@pytest.mark.parametrize(("metadata", "selection", "expected"), [
    ({"inclusion": "automatic"}, {"selected": False}, True),
    ({"inclusion": "unsupported", "selected-by-default": True}, {"selected": True}, False),
    ({"inclusion": "available", "selected-by-default": True}, {"selected": False}, False),
    ({"inclusion": "available", "selected-by-default": True}, {}, True),
    ({"inclusion": "available"}, {}, False),
    ({"inclusion": "available"}, {"selected": True}, True),
])
def test_effective_selected(metadata, selection, expected):
    assert effective_selected(metadata, selection) is expected


def test_selecting_a_stream_and_fields():
    discovered = discovered_metadata(SPEC, supported=True)
    selections, problems = selection_problems("contacts", discovered, {}, [
        {"breadcrumb": [], "metadata": {"selected": True, "replication-method": "INCREMENTAL",
                                        "replication-key": "updated_at"}},
        {"breadcrumb": ["properties", "email"], "metadata": {"selected": False}},
    ])
    assert problems == []
    assert stream_selected(discovered, selections)
    merged = by_breadcrumb(merged_metadata(discovered, selections))
    assert merged[()]["selected"] and merged[()]["replication-key"] == "updated_at"
    assert merged[("properties", "id")]["selected"]  # automatic: on with the stream
    assert not merged[("properties", "email")]["selected"]


def test_selection_problems_are_all_reported():
    discovered = discovered_metadata(SPEC, supported=True)
    _, problems = selection_problems("contacts", discovered, {}, [
        {"breadcrumb": ["properties", "nope"], "metadata": {"selected": True}},
        {"breadcrumb": [], "metadata": {"replication-key": "email", "inclusion": "automatic"}},
    ])
    reasons = " | ".join(p.reason for p in problems)
    assert "unknown breadcrumb" in reasons
    assert "'email' is not one of the valid replication keys" in reasons
    assert "'inclusion' cannot be written" in reasons


def test_unsupported_cannot_be_selected():
    discovered = discovered_metadata(SPEC, supported=False)
    _, problems = selection_problems("contacts", discovered, {}, [{"breadcrumb": [], "metadata": {"selected": True}}])
    assert problems[0].reason == "unsupported: it cannot be selected"


def test_incremental_needs_a_replication_key():
    discovered = discovered_metadata(SPEC, supported=True)
    _, problems = selection_problems("contacts", discovered, {}, [
        {"breadcrumb": [], "metadata": {"selected": True, "replication-method": "INCREMENTAL"}}])
    assert "needs a replication-key" in problems[0].reason


def test_rediscovery_keeps_selections_that_still_exist():
    old = {breadcrumb_key([]): {"selected": True}, breadcrumb_key(["properties", "gone"]): {"selected": True}}
    kept = carry_selections(old, discovered_metadata(SPEC, supported=True))
    assert kept == {breadcrumb_key([]): {"selected": True}}
