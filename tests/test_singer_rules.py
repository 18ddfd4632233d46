"""The Singer connector's pure parts: the card's section, the config mapping, reading a catalog and
the selections hand-off. No process, no app, no database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.catalog.cards import freeze
from app.catalog.loader import check_paths
from app.catalog.singer_section import SpecError, parse_spec, problems
from app.connectors.singer.catalog import CatalogInvalid, catalog_document, parse_catalog
from app.connectors.singer.config import ConfigConversionError, config_changes, tap_config
from app.connectors.singer.connector import host_of
from app.discovery.handoff import StoredStream, selected_catalog

from .singer_support import singer_document

GOOD = {"requirement": "tap-hubspot>=4.5,<5", "executable": "tap-hubspot", "capabilities": ["discover", "test"],
        "config": {"rename": {"api_key": "token"}, "drop": ["frequency_in_minutes"], "fixed": {"ua": "connect"},
                   "types": {"port": "integer"}},
        "limits": {"timeout_seconds": 60, "max_output_bytes": 1024}}


def test_a_good_section_parses_into_a_frozen_spec() -> None:
    spec = parse_spec(freeze(GOOD))
    assert spec.package == "tap-hubspot" and spec.executable == "tap-hubspot"
    assert spec.tests_connection and spec.capabilities == {"discover", "test"}
    assert spec.config.rename == {"api_key": "token"} and spec.config.property_for("token") == "api_key"
    assert spec.limits.timeout_seconds == 60.0 and spec.limits.max_memory_bytes is None
    assert spec.installable
    with pytest.raises(AttributeError):
        spec.executable = "other"  # type: ignore[misc]


@pytest.mark.parametrize("change, path, words", [
    ({"requirement": "tap hubspot!!"}, "$.singer.requirement", "not a valid requirement"),
    ({"requirement": "tap-x; python_version<'3'"}, "$.singer.requirement", "markers"),
    ({"requirement": None}, "$.singer.requirement", "pip requirement"),
    ({"extra_requirements": ["??"]}, "$.singer.extra_requirements[0]", "not a valid requirement"),
    ({"executable": "../bin/sh"}, "$.singer.executable", "console script"),
    ({"capabilities": ["discover", "sync"]}, "$.singer.capabilities[1]", "unknown capability"),
    ({"capabilities": ["test"]}, "$.singer.capabilities", "must include discover"),
    ({"config": {"rename": {"api_key": 3}}}, "$.singer.config.rename", "strings"),
    ({"config": {"types": {"port": "int"}}}, "$.singer.config.types.port", "must be one of"),
    ({"config": {"rename": {"a": "k", "b": "k"}}}, "$.singer.config.rename.a", "two properties"),
    ({"config": {"shuffle": True}}, "$.singer.config.shuffle", "unknown key"),
    ({"limits": {"timeout_seconds": 0}}, "$.singer.limits.timeout_seconds", "positive"),
    ({"limits": {"max_output_bytes": 1.5}}, "$.singer.limits.max_output_bytes", "whole number"),
    ({"limits": {"patience": 3}}, "$.singer.limits.patience", "unknown limit"),
    ({"installable": False}, "$.singer.not_installable_reason", "say why"),
    ({"surprise": 1}, "$.singer.surprise", "unknown key"),
    ({"network": {"hosts": "host"}}, "$.singer.network.hosts", "list of property names"),
    ({"network": {"ports": []}}, "$.singer.network.ports", "unknown key"),
])
def test_each_problem_of_a_section_names_its_path(change: dict, path: str, words: str) -> None:
    found = problems({**GOOD, **change})
    assert any(p == path and words in reason for p, reason in found), found
    with pytest.raises(SpecError):
        parse_spec({**GOOD, **change})


def test_mappings_must_name_properties_the_card_has() -> None:
    found = problems({**GOOD, "config": {"rename": {"api_kee": "token"}, "drop": ["nope"]},
                      "network": {"urls": ["api_url"]}}, {"api_key"})
    assert ("$.singer.network.urls[0]", "no property 'api_url' in this card") in found
    assert ("$.singer.config.rename.api_kee", "no property 'api_kee' in this card") in found
    assert ("$.singer.config.drop[0]", "no property 'nope' in this card") in found


def test_the_loader_reports_a_bad_singer_section_with_file_and_path(tmp_path: Path) -> None:
    document = singer_document("test.bad-singer", {"requirement": "tap-x", "executable": "tap x"})
    (tmp_path / "bad.json").write_text(json.dumps(document))
    cards, found = check_paths([tmp_path])
    assert not cards
    assert [(p.file.endswith("bad.json"), p.json_path) for p in found] == [(True, "$.singer.executable")]


def test_the_shipped_cards_declare_148_taps_that_all_parse() -> None:
    cards, found = check_paths([Path(__file__).resolve().parent.parent / "report_cards"])
    assert not found
    with_singer = {t: parse_spec(c.singer) for t, c in cards.items() if c.singer is not None}
    assert len(with_singer) == 148
    # A type the database connector serves keeps its tap's section (for a pipeline), but checks through it.
    assert all(cards[t].connector == ("database" if cards[t].database is not None else "singer") for t in with_singer)
    assert with_singer["platform.hubspot"].package == "tap-hubspot"


def test_properties_become_config_by_name_with_drops_renames_fixed_values_and_types() -> None:
    spec = parse_spec({**GOOD, "config": {"rename": {"api_key": "token"}, "drop": ["frequency_in_minutes"],
                                          "fixed": {"ua": "connect", "port": 1}, "types": {
                                              "port": "integer", "flag": "boolean", "ratio": "number",
                                              "filters": "json", "name": "string"}}})
    config = tap_config(spec.config, {"api_key": "k-123", "frequency_in_minutes": "60", "start_date": None,
                                      "port": "5432", "flag": "yes", "ratio": "0.5", "filters": '{"a": 1}',
                                      "name": 7})
    assert config == {"token": "k-123", "ua": "connect", "port": 1, "flag": True, "ratio": 0.5,
                      "filters": {"a": 1}, "name": "7"}


@pytest.mark.parametrize("kind, value", [("integer", "5432x"), ("integer", True), ("integer", 1.5),
                                         ("boolean", "maybe"), ("number", "many"), ("json", "{bad")])
def test_a_value_that_does_not_convert_names_the_property_not_the_value(kind: str, value: object) -> None:
    spec = parse_spec({**GOOD, "config": {"rename": {"secret_port": "port"}, "types": {"port": kind}}})
    with pytest.raises(ConfigConversionError) as caught:
        tap_config(spec.config, {"secret_port": value})
    assert caught.value.property_name == "secret_port" and str(value) not in str(caught.value)


def test_config_changes_are_added_or_changed_keys_never_removed_ones() -> None:
    written = {"refresh_token": "old", "client_id": "c", "start_date": "2024"}
    assert config_changes(written, {"refresh_token": "new", "client_id": "c", "access_token": "a"}) == {
        "refresh_token": "new", "access_token": "a"}
    assert config_changes(written, None) == {} and config_changes(written, ["not", "a", "config"]) == {}


def test_a_catalog_is_read_with_the_taps_metadata_kept() -> None:
    raw = {"streams": [{"tap_stream_id": "public-users", "stream": "users", "table_name": "users",
                        "schema": {"type": "object", "properties": {"id": {"type": "integer"}}},
                        "metadata": [{"breadcrumb": [], "metadata": {"schema-name": "public", "is-view": False}},
                                     {"breadcrumb": ["properties", "id"], "metadata": {"inclusion": "automatic"}}]}]}
    [stream] = parse_catalog(catalog_document(b"INFO discovering\n" + json.dumps(raw, indent=2).encode()))
    assert (stream.tap_stream_id, stream.stream_name) == ("public-users", "users")
    assert stream.metadata[0] == {"breadcrumb": [], "metadata": {"schema-name": "public", "is-view": False}}


def test_a_stream_without_metadata_gets_the_standard_metadata() -> None:
    [stream] = parse_catalog({"streams": [{"tap_stream_id": "t", "key_properties": ["id"],
                                           "schema": {"properties": {"id": {}, "name": {}}}}]})
    assert list(stream.metadata) == [
        {"breadcrumb": [], "metadata": {"table-key-properties": ["id"]}},
        {"breadcrumb": ["properties", "id"], "metadata": {"inclusion": "automatic"}},
        {"breadcrumb": ["properties", "name"], "metadata": {"inclusion": "available"}}]
    [partial] = parse_catalog({"streams": [{"tap_stream_id": "t", "schema": {}, "metadata": [
        {"breadcrumb": ["properties", "id"], "metadata": {}}]}]})
    assert partial.metadata[0] == {"breadcrumb": [], "metadata": {}}


@pytest.mark.parametrize("output, reason", [
    (b"", "printed nothing"),
    (b"Traceback: boom", "not JSON"),
    (b'{"streams": 3}', "no \"streams\" list"),
    (b"[1, 2]", "no \"streams\" list"),
    (b'{"streams": [3]}', "streams[0]: a stream must be an object"),
    (b'{"streams": [{"schema": {}}]}', "streams[0].tap_stream_id"),
    (b'{"streams": [{"tap_stream_id": "a", "schema": []}]}', "streams[0].schema"),
    (b'{"streams": [{"tap_stream_id": "a", "schema": {}, "stream": 5}]}', "streams[0].stream"),
    (b'{"streams": [{"tap_stream_id": "a", "schema": {}, "metadata": {}}]}', "streams[0].metadata: must be a list"),
    (b'{"streams": [{"tap_stream_id": "a", "schema": {}, "metadata": [{"breadcrumb": "x", "metadata": {}}]}]}',
     "breadcrumb"),
    (b'{"streams": [{"tap_stream_id": "a", "schema": {}, "metadata": [{"breadcrumb": [], "metadata": 1}]}]}',
     "metadata[0].metadata"),
    (b'{"streams": [{"tap_stream_id": "a", "schema": {}}, {"tap_stream_id": "a", "schema": {}}]}', "appears twice"),
])
def test_what_is_not_a_catalog_says_why(output: bytes, reason: str) -> None:
    with pytest.raises(CatalogInvalid, match=None) as caught:
        parse_catalog(catalog_document(output))
    assert reason in str(caught.value)


def test_the_hand_off_writes_effective_selections_and_replication_choices() -> None:
    discovered = [
        {"breadcrumb": [], "metadata": {"inclusion": "available", "table-key-properties": ["id"],
                                        "valid-replication-keys": ["updated"]}},
        {"breadcrumb": ["properties", "id"], "metadata": {"inclusion": "automatic"}},
        {"breadcrumb": ["properties", "name"], "metadata": {"inclusion": "available", "selected-by-default": True}},
        {"breadcrumb": ["properties", "ssn"], "metadata": {"inclusion": "available"}},
        {"breadcrumb": ["properties", "blob"], "metadata": {"inclusion": "unsupported"}},
    ]
    chosen = StoredStream("users", "users", {"type": "object"}, discovered, {
        "[]": {"selected": True, "replication-method": "INCREMENTAL", "replication-key": "updated"}})
    untouched = StoredStream("orders", "orders", {}, [{"breadcrumb": [], "metadata": {"inclusion": "available"}}], {})
    catalog = selected_catalog([chosen, untouched])
    users, orders = catalog["streams"]
    selected = {tuple(e["breadcrumb"]): e["metadata"]["selected"] for e in users["metadata"]}
    assert selected == {(): True, ("properties", "id"): True, ("properties", "name"): True,
                        ("properties", "ssn"): False, ("properties", "blob"): False}
    assert users["metadata"][0]["metadata"]["replication-key"] == "updated"
    assert (users["key_properties"], users["replication_method"], users["replication_key"]) == (
        ["id"], "INCREMENTAL", "updated")
    assert orders["metadata"][0]["metadata"]["selected"] is False
    assert discovered[0]["metadata"].get("selected") is None  # the stored metadata is not changed


def test_the_taps_other_entry_keys_go_back_with_the_users_replication_choice_over_them() -> None:
    raw = {"streams": [{"tap_stream_id": "public-items", "stream": "public-items", "table_name": "items",
                        "replication_method": "", "is_view": False, "key_properties": ["id"], "schema": {},
                        "metadata": [{"breadcrumb": [], "metadata": {"valid-replication-keys": ["u"]}}]}]}
    [stream] = parse_catalog(raw)
    assert stream.extra == {"table_name": "items", "replication_method": "", "is_view": False, "key_properties": ["id"]}
    untouched = selected_catalog([StoredStream(stream.tap_stream_id, stream.stream_name, stream.schema,
                                               list(stream.metadata), {}, stream.extra)])
    assert {k: v for k, v in untouched["streams"][0].items() if k != "metadata"} == {
        **{k: v for k, v in raw["streams"][0].items() if k != "metadata"}}
    chosen = selected_catalog([StoredStream(stream.tap_stream_id, stream.stream_name, stream.schema,
                                            list(stream.metadata), {"[]": {"replication-method": "FULL_TABLE"}},
                                            stream.extra)])
    assert chosen["streams"][0]["replication_method"] == "FULL_TABLE"


@pytest.mark.parametrize("value, host", [("db.example", "db.example"), ("db.example:5432", "db.example"),
                                         ("https://API.example/v1?x=1", "api.example"), ("[::1]:80", "::1"),
                                         ("http://user:pw@10.0.0.1/", "10.0.0.1"), ("", None), ("http://[x", None)])
def test_the_host_a_network_property_names(value: str, host: str | None) -> None:
    assert host_of(value) == host


def test_the_cards_mark_exactly_the_taps_the_coverage_run_did_not_count() -> None:
    root = Path(__file__).resolve().parent.parent
    coverage = json.loads((root / "docs" / "tap-coverage.json").read_text())["types"]
    cards, _ = check_paths([root / "report_cards"])
    marked = {t for t, c in cards.items() if c.singer is not None and not parse_spec(c.singer).installable}
    assert marked == {t for t, r in coverage.items() if not r["counted"]}
    assert set(coverage) == {t for t, c in cards.items() if c.singer is not None}
