"""The pure core: the step machine and the property rules, with no app and no database."""

from __future__ import annotations

import pytest

from app.catalog import load_catalog
from app.config import DEFAULT_REPORT_CARDS
from app.sources.rules import check_properties, derive_name, name_problem
from app.sources.steps import SourceFacts, derive_step


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(str(DEFAULT_REPORT_CARDS))


@pytest.fixture(scope="module")
def ga(catalog):
    return catalog.get("platform.google-analytics")


FORM = {"start_date", "image_version", "quota_user"}
OAUTH = {"client_id", "client_secret", "refresh_token", "view_id"}


@pytest.mark.parametrize(("facts", "expected"), [
    (SourceFacts(), (1, "form")),
    (SourceFacts(provided=frozenset({"start_date", "image_version"})), (1, "form")),
    (SourceFacts(provided=frozenset(FORM)), (2, "oauth")),
    (SourceFacts(provided=frozenset(FORM | OAUTH - {"view_id"})), (2, "oauth")),
    (SourceFacts(provided=frozenset(FORM | OAUTH)), (3, "discover_schema")),
    (SourceFacts(provided=frozenset(FORM | OAUTH), discovery_succeeded=True), (4, "field_selection")),
    (SourceFacts(provided=frozenset(FORM | OAUTH), discovery_succeeded=True, stream_selected=True),
     (5, "fully_configured")),
    # An earlier incomplete step wins over later facts: a cleared credential steps the source back.
    (SourceFacts(provided=frozenset(FORM), discovery_succeeded=True, stream_selected=True), (2, "oauth")),
])
def test_derive_step(ga, facts, expected):
    position = derive_step(ga, facts)
    assert (position.number, position.type) == expected


def test_optional_properties_never_block(ga):
    facts = SourceFacts(provided=frozenset(FORM | OAUTH))
    assert "anchor_time" not in facts.provided
    assert derive_step(ga, facts).type == "discover_schema"


def test_a_type_without_discovery_is_fully_configured_once_its_form_is(catalog):
    card = catalog.get("import_api")
    assert [s.type for s in card.steps] == ["form", "fully_configured"]
    assert derive_step(card, SourceFacts()).type == "fully_configured"


@pytest.mark.parametrize(("display_name", "name"), [
    ("HubSpot main", "hubspot_main"),
    ("  Google   Analytics!! 2 ", "google_analytics_2"),
    ("2nd shop", "_2nd_shop"),
    ("####", ""),
    ("x" * 80, "x" * 49),
])
def test_derive_name(display_name, name):
    assert derive_name(display_name) == name


def test_name_problems():
    assert name_problem("ok_name$1") is None
    assert "under 50" in name_problem("a" * 50)
    assert "lower-case" in name_problem("Upper")
    assert "lower-case" in name_problem("1abc")


def problems_by_property(card, incoming, current=None):
    return {p.property: p.reason for p in check_properties(card, incoming, current or {})}


def test_every_broken_rule_is_reported_at_once(ga):
    problems = problems_by_property(ga, {
        "start_date": "2019-03-25", "frequency_in_minutes": "45", "image_version": "2",
        "nonsense": "x", "view_id": 5, "anchor_time": "",
    })
    assert set(problems) == {"start_date", "frequency_in_minutes", "image_version", "nonsense",
                             "view_id", "anchor_time"}
    assert problems["start_date"] == "must be a date at midnight UTC such as 2024-01-31T00:00:00Z"
    assert problems["frequency_in_minutes"] == "must be one of 1, 30, 60, 360, 720 or 1440"
    assert problems["image_version"] == "read-only: the service sets it"
    assert "not a property of source type 'platform.google-analytics'" in problems["nonsense"]
    assert "must be a string, got integer" == problems["view_id"]
    assert "send null to clear" in problems["anchor_time"]


def test_valid_values_and_null_pass(ga):
    assert check_properties(ga, {"start_date": "2019-03-25T00:00:00Z", "frequency_in_minutes": "60",
                                 "view_id": None, "client_secret": "s3cr3t"}, {}) == []


def test_a_credential_value_never_appears_in_a_reason(catalog):
    card = catalog.get("platform.google-analytics")
    reasons = problems_by_property(card, {"client_secret": 1234567890})
    assert "1234567890" not in reasons["client_secret"]
    assert reasons["client_secret"] == "must be a string, got integer"


def test_a_null_schema_means_any_string(catalog):
    card = catalog.get("platform.braintree")  # merchant_id: null in Stitch's card
    assert card.properties["merchant_id"].json_schema["type"] == "string"
    assert check_properties(card, {"merchant_id": "anything at all"}, {}) == []
    assert "must be a string" in problems_by_property(card, {"merchant_id": 5})["merchant_id"]


def test_immutable_properties_are_set_once(catalog):
    card = catalog.get("platform.salesforce")
    name, value, other = "api_type", "REST", "BULK"
    assert card.properties[name].property_type == "user_provided_immutable"
    assert check_properties(card, {name: value}, {}) == []
    assert check_properties(card, {name: value}, {name: value}) == []  # resending the same value
    assert "immutable" in problems_by_property(card, {name: other}, {name: value})[name]
    assert "immutable" in problems_by_property(card, {name: None}, {name: value})[name]
