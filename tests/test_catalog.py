"""The catalog: shipped report cards load and match the Stitch data; broken files are refused
with the file, the JSON path and the reason, at start-up and by `flask connect check-report-cards`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from app import create_app
from app.catalog.loader import CatalogError, check_paths, load_catalog
from app.cli import connect_cli
from app.config import DEFAULT_REPORT_CARDS
from app.sources.presenter import blank_card_json

from .conftest import base_config

SHARED_DATA = DEFAULT_REPORT_CARDS.parent.parent / "shared" / "data"
GA = "platform.google-analytics.json"


def stitch_types() -> dict[str, dict]:
    path = SHARED_DATA / "stitch-source-types.json"
    if not path.exists():
        pytest.skip("../shared/data is not beside this checkout")
    return {t["type"]: t for t in json.loads(path.read_text())["source_types"]}


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(str(DEFAULT_REPORT_CARDS))


def test_every_stitch_source_type_has_a_report_card(catalog):
    assert set(stitch_types()) <= set(catalog.cards)


def test_shipped_cards_copy_stitch_properties_attribute_for_attribute(catalog):
    for source_type, data in stitch_types().items():
        if not data["steps"]:
            continue
        card = catalog.get(source_type)
        assert [s.type for s in card.steps] == [s["type"] for s in data["steps"]], source_type
        for step, data_step in zip(card.steps, data["steps"], strict=True):
            for prop, data_prop in zip(step.properties, data_step["properties"], strict=True):
                public = prop.public()
                for attribute in ("name", "is_required", "is_credential", "system_provided",
                                  "property_type", "tap_mutable"):
                    assert public[attribute] == data_prop[attribute], (source_type, prop.name)


def test_blank_cards_start_where_stitch_says_a_new_source_starts(catalog):
    mismatches = []
    for source_type, data in stitch_types().items():
        if not data["steps"]:
            continue
        blank = json.loads(blank_card_json(catalog.get(source_type)))
        expected = data["blank_report_card"]
        if (blank["current_step"], blank["current_step_type"]) != (
            expected["current_step"], expected["current_step_type"]):
            mismatches.append(source_type)
    assert mismatches == []


def test_managed_oauth_types_are_oauth_step_types(catalog):
    assert catalog.managed_oauth_count > 0
    for card in catalog.cards.values():
        if card.managed_oauth:
            assert card.has_step("oauth"), card.type


# --- broken files -------------------------------------------------------------------------------

def ga_document() -> dict:
    return json.loads((DEFAULT_REPORT_CARDS / GA).read_text())


def write(folder: Path, name: str, content: str | dict) -> Path:
    path = folder / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def broken_cases():
    def drop_type(d):
        del d["type"]

    def unknown_property_type(d):
        d["steps"][0]["properties"][0]["property_type"] = "magic"

    def invalid_json_schema(d):
        d["steps"][0]["properties"][0]["json_schema"] = {"type": "strnig"}

    def duplicate_property(d):
        d["steps"][1]["properties"].append(dict(d["steps"][0]["properties"][0]))

    def unknown_step_type(d):
        d["steps"][2]["type"] = "profile_picker"

    return [
        ("missing type", drop_type, "$", "'type' is a required property"),
        ("unknown property_type", unknown_property_type,
         "$.steps[0].properties[0].property_type", "'magic' is not one of"),
        ("invalid json_schema", invalid_json_schema,
         "$.steps[0].properties[0].json_schema.type", "invalid json_schema"),
        ("duplicate property name", duplicate_property,
         "$.steps[1].properties[5].name", "duplicate property name 'anchor_time'"),
        ("unknown step type", unknown_step_type, "$.steps[2].type", "'profile_picker' is not one of"),
    ]


def test_the_compiled_and_the_python_validators_agree_on_every_card():
    """The loader trusts jsonschema-rs's "valid" to skip the Python walk: both must say the same of
    every shipped and test card, and of broken ones (section typos are the sections' own check)."""
    from jsonschema import Draft202012Validator

    from app.catalog.loader import SCHEMA_PATH, _compiled_file_validator

    python = Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    documents = [json.loads(path.read_text()) for folder in (DEFAULT_REPORT_CARDS, TEST_CARDS)
                 for path in sorted(folder.glob("*.json"))]
    for _, mutate, _, _ in broken_cases():
        document = ga_document()
        mutate(document)
        documents.append(document)
    for extra in ({"aliases": "hubspot"}, {"connector": 7}, {"oauth": []}, {"unknown_section": {}}):
        documents.append({**ga_document(), **extra})
    verdicts = [(_compiled_file_validator().is_valid(d), python.is_valid(d)) for d in documents]
    assert [i for i, (fast, slow) in enumerate(verdicts) if fast != slow] == []
    assert any(not fast for fast, _ in verdicts) and sum(fast for fast, _ in verdicts) >= 186


@pytest.mark.parametrize(("label", "mutate", "json_path", "reason"), broken_cases(),
                         ids=[c[0] for c in broken_cases()])
def test_a_broken_card_is_refused_with_file_path_and_reason(tmp_path, label, mutate, json_path, reason):
    document = ga_document()
    mutate(document)
    file = write(tmp_path, GA, document)
    _, problems = check_paths([tmp_path])
    assert problems, label
    assert any(p.file == str(file) and p.json_path == json_path and reason in p.reason
               for p in problems), [str(p) for p in problems]


def test_a_file_that_is_not_json_is_refused(tmp_path):
    file = write(tmp_path, "broken.json", '{"type": "x",')
    _, problems = check_paths([tmp_path])
    assert [(p.file, p.json_path) for p in problems] == [(str(file), "$")]
    assert "not valid JSON" in problems[0].reason


def test_duplicate_json_keys_are_refused(tmp_path):
    write(tmp_path, "dup.json", '{"type": "a", "type": "b", "display_name": "x", "steps": []}')
    _, problems = check_paths([tmp_path])
    assert "duplicate key 'type'" in problems[0].reason


def test_two_files_of_one_type_in_one_folder_are_refused(tmp_path):
    write(tmp_path, GA, ga_document())
    second = write(tmp_path, "zz-copy.json", ga_document())
    _, problems = check_paths([tmp_path])
    assert len(problems) == 1
    assert problems[0].file == str(second) and problems[0].json_path == "$.type"
    assert "also defined in" in problems[0].reason


def test_a_later_folder_overrides_a_type(tmp_path):
    override = ga_document()
    override["display_name"] = "GA (ours)"
    write(tmp_path, GA, override)
    cards, problems = check_paths([DEFAULT_REPORT_CARDS, tmp_path])
    assert problems == []
    assert cards["platform.google-analytics"].display_name == "GA (ours)"


def test_start_up_refuses_a_broken_catalog(tmp_path, migrated_database):
    document = ga_document()
    document["steps"][0]["properties"][0]["property_type"] = "magic"
    write(tmp_path, GA, document)
    with pytest.raises(CatalogError) as raised:
        create_app(base_config(migrated_database, REPORT_CARDS=str(tmp_path)))
    assert f"{tmp_path / GA}: $.steps[0].properties[0].property_type" in str(raised.value)


def test_check_report_cards_command(tmp_path):
    runner = CliRunner()
    good = runner.invoke(connect_cli, ["check-report-cards", str(DEFAULT_REPORT_CARDS)])
    assert good.exit_code == 0, good.output
    assert "report cards OK" in good.output

    shutil.copy(DEFAULT_REPORT_CARDS / GA, tmp_path / GA)
    write(tmp_path, "broken.json", "not json")
    bad = runner.invoke(connect_cli, ["check-report-cards", str(tmp_path)])
    assert bad.exit_code == 1
    assert f"{tmp_path / 'broken.json'}: $: not valid JSON" in bad.output


# --- the typed sections: a key a section does not have is a load error ---------------------------

TEST_CARDS = Path(__file__).resolve().parent / "report_cards"


def section_cases():
    def auth_typo(d):
        d["auth"]["prefx"] = "Token "  # a key no auth type has

    def key_of_another_auth_type(d):
        d["auth"]["grant_type"] = "refresh_token"

    def inject_typo(d):
        d["auth"]["inject"]["field"] = "X-Session"

    def request_auth_typo(d):
        d["api"]["check"]["auth"] = {"type": "basic", "username": "u", "passwrd": "p"}

    def login_auth_typo(d):
        d["auth"]["login"]["auth"] = {"type": "api_key", "token": "t", "inject_into": "header",
                                      "field_name": "X-Key", "prefx": "Key "}

    return [
        ("auth key typo", "test.auth-bearer.json", auth_typo, "$.auth.prefx",
         "auth of type 'bearer' has no key 'prefx' (its keys: token, type)"),
        ("a key of another auth type", "test.auth-bearer.json", key_of_another_auth_type, "$.auth.grant_type",
         "auth of type 'bearer' has no key 'grant_type'"),
        ("session inject typo", "test.session-cached.json", inject_typo, "$.auth.inject.field",
         "auth.inject has no key 'field'"),
        ("a request's own auth", "test.auth-bearer.json", request_auth_typo, "$.api.check.auth.passwrd",
         "auth of type 'basic' has no key 'passwrd'"),
        ("a login's auth", "test.session-cached.json", login_auth_typo, "$.auth.login.auth.prefx",
         "auth of type 'api_key' has no key 'prefx'"),
    ]


@pytest.mark.parametrize(("label", "name", "mutate", "json_path", "reason"), section_cases(),
                         ids=[c[0] for c in section_cases()])
def test_a_key_a_section_does_not_have_is_refused_with_file_and_path(tmp_path, label, name, mutate, json_path,
                                                                     reason):
    document = json.loads((TEST_CARDS / name).read_text())
    mutate(document)
    file = write(tmp_path, name, document)
    cards, problems = check_paths([tmp_path])
    assert cards == {}
    assert [(p.file, p.json_path) for p in problems] == [(str(file), json_path)], label
    assert reason in problems[0].reason


def test_sections_are_typed_with_their_defaults(catalog):
    hubspot = catalog.get("platform.hubspot")
    assert hubspot.oauth.authorize_url.startswith("https://") and hubspot.oauth.pkce is True
    assert hubspot.oauth.scope_separator == " " and isinstance(hubspot.oauth.scopes, tuple)
    import_api = catalog.get("import_api")
    assert (import_api.oauth, import_api.api, import_api.auth.type) == (None, None, "none")
    bearer = load_catalog(str(TEST_CARDS)).get("test.auth-bearer")
    assert (bearer.auth.type, bearer.auth.token) == ("bearer", "{{ properties.api_token }}")
    assert bearer.api.check.path == "/check" and bearer.api.check.method == "GET"
    assert [s.tap_stream_id for s in bearer.api.streams] == ["contacts"]
    assert bearer.api.streams[0].key_properties == ("id",) and bearer.api.streams[0].method == "GET"
