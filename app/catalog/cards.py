"""The loaded, immutable form of a report card file.

A :class:`ReportCard` holds the public report card (with each property's validator compiled once)
and the private sections: ``oauth``, ``auth`` and ``api`` parsed into the frozen dataclasses of
app/catalog/sections.py (a key a section does not have is a load error), ``system_values``,
``form_layout``, ``database`` and ``singer`` frozen read-only. The type-level card served by
``GET /v4/source-types/{type}`` never changes, so it is serialised once (app/sources/presenter.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from jsonschema import Draft7Validator

from .formats import format_checker
from .frozen import freeze, thaw
from .sections import NO_AUTH, ApiSection, AuthSection, OAuthSection, parse_api, parse_auth, parse_oauth

STEP_TYPES = ("form", "oauth", "discover_schema", "field_selection", "fully_configured")
CREDENTIAL_STEP_TYPES = ("form", "oauth")
PROPERTY_TYPES = (
    "user_provided",
    "user_provided_immutable",
    "user_provided_advanced",
    "read_only",
    "system_provided_by_default",
)
PROPERTY_ATTRIBUTES = (
    "name", "is_required", "is_credential", "system_provided", "property_type", "json_schema",
    "tap_mutable",
)
_FORMAT_CHECKER = format_checker()


@dataclass(frozen=True)
class PropertySpec:
    name: str
    step_type: str
    is_required: bool
    is_credential: bool
    system_provided: bool
    property_type: str
    json_schema: Any
    tap_mutable: bool
    validator: Draft7Validator | None = field(default=None, compare=False, repr=False)

    @property
    def is_read_only(self) -> bool:
        return self.property_type == "read_only"

    @property
    def is_immutable(self) -> bool:
        """Set once: the value a source has cannot change (app/sources/rules.py:changes_immutable)."""
        return self.property_type == "user_provided_immutable"

    def public(self) -> dict[str, Any]:
        """The property as a report card shows it. A read-only property's schema is served too
        (Stitch's own example serves Google Analytics' ``quota_user`` as ``{"type": "string"}``)."""
        return {
            "name": self.name,
            "is_required": self.is_required,
            "is_credential": self.is_credential,
            "system_provided": self.system_provided,
            "property_type": self.property_type,
            "json_schema": thaw(self.json_schema),
            "provided": False,
            "tap_mutable": self.tap_mutable,
        }


@dataclass(frozen=True)
class Step:
    type: str
    properties: tuple[PropertySpec, ...]

    @property
    def required(self) -> tuple[PropertySpec, ...]:
        return tuple(p for p in self.properties if p.is_required)


class ReportCard:
    """One source type. Attributes are read-only by convention and by freezing."""

    __slots__ = (
        "type", "display_name", "aliases", "details", "upgrade_available", "steps", "properties", "system_values",
        "oauth", "auth", "api", "connector", "database", "singer", "path", "summary", "_public_steps",
        "oauth_fills", "oauth_remaining", "form_layout",
    )

    def __init__(self, document: dict[str, Any], path: str) -> None:
        self.path = path
        self.type: str = document["type"]
        self.display_name: str = document["display_name"]
        # Short names (``hubspot``) the Airbyte dialect resolves through Catalog.resolve.
        self.aliases: tuple[str, ...] = tuple(document.get("aliases") or ())
        self.details = freeze(document.get("details") or {})
        self.upgrade_available = freeze(document.get("upgrade_available"))
        steps = []
        for step in document["steps"]:
            props = tuple(_property(step["type"], p) for p in step["properties"])
            steps.append(Step(step["type"], props))
        self.steps: tuple[Step, ...] = tuple(steps)
        self.properties: Mapping[str, PropertySpec] = MappingProxyType(
            {p.name: p for s in self.steps for p in s.properties}
        )
        self.system_values = freeze(document.get("system_values") or {})
        oauth, auth, api = document.get("oauth"), document.get("auth"), document.get("api")
        self.oauth: OAuthSection | None = parse_oauth(oauth) if oauth is not None else None
        self.form_layout = freeze(document.get("form_layout"))
        # No auth section: requests go out without credentials (the same as ``type: none``).
        self.auth: AuthSection = parse_auth(auth) if auth is not None else NO_AUTH
        self.api: ApiSection | None = parse_api(api) if api is not None else None
        self.database = freeze(document.get("database"))
        self.singer = freeze(document.get("singer"))
        self.connector: str | None = connector_kind(document)
        self.oauth_fills, self.oauth_remaining = handshake_coverage(self.oauth, self.step("oauth"))
        self._public_steps = tuple(
            (s.type, tuple(p.public() for p in s.properties)) for s in self.steps
        )
        self.summary: dict[str, Any] = {
            "type": self.type,
            "display_name": self.display_name,
            # The short names the Airbyte dialect takes as connector_type (hubspot, postgres …).
            "aliases": list(self.aliases),
            "details": thaw(self.details),
            "upgrade_available": thaw(self.upgrade_available),
            "steps": [s.type for s in self.steps],
            "managed_oauth": self.oauth is not None,
        }

    def handshake_summary(self) -> dict[str, Any]:
        """What the type-level card says about its managed handshake (nothing without one)."""
        if self.oauth is None:
            return {}
        return {"oauth_handshake": {"fills": sorted(self.oauth_fills),
                                    "remaining_inputs": list(self.oauth_remaining)}}

    @property
    def upgrade_type(self) -> str | None:
        """The type Stitch names as this one's successor (``upgrade_available.type``)."""
        upgrade = self.upgrade_available
        return str(upgrade["type"]) if isinstance(upgrade, Mapping) and upgrade.get("type") else None

    @property
    def managed_oauth(self) -> bool:
        return self.oauth is not None

    def step(self, step_type: str) -> Step | None:
        return next((s for s in self.steps if s.type == step_type), None)

    def has_step(self, step_type: str) -> bool:
        return self.step(step_type) is not None

    def public_steps(self, provided: frozenset[str] | set[str] = frozenset()) -> list[dict]:
        """The steps as served, with ``provided`` set from the given property names."""
        return [
            {
                "type": step_type,
                "properties": [
                    {**p, "provided": p["name"] in provided} if provided else dict(p)
                    for p in props
                ],
            }
            for step_type, props in self._public_steps
        ]

    def __repr__(self) -> str:
        return f"<ReportCard {self.type}>"


def connector_kind(document: Mapping[str, Any]) -> str | None:
    """The card's connector kind (app/connectors/base.py): named, or ``http`` for a card in the
    older format (an ``auth``/``api`` section and no ``connector``), or None: no connector."""
    named = document.get("connector")
    if named is not None:
        return str(named)
    return "http" if document.get("auth") is not None or document.get("api") is not None else None


def handshake_coverage(oauth: OAuthSection | None, oauth_step: Step | None
                       ) -> tuple[frozenset[str], tuple[str, ...]]:
    """(properties a finished managed handshake provides, required ``oauth``-step properties it
    does not: what the user or integrator still has to give, such as Google Analytics' view_id).

    A handshake provides the app's client credentials (``client_properties``), fields of the token
    response (``token_properties``) and of the redirect (``callback_properties``), what it knows
    itself (``handshake_properties``: the redirect URI it used, the scopes it asked for) and the
    inputs it was started with (``input_properties``)."""
    if oauth is None or oauth_step is None:
        return frozenset(), ()
    fills = {*oauth.client_properties.names, *oauth.token_properties.values(), *oauth.callback_properties.values(),
             *oauth.handshake_properties.names, *oauth.input_properties}
    remaining = tuple(p.name for p in oauth_step.required if p.name not in fills)
    return frozenset(fills), remaining


ANNOTATIONS = ("title", "description")


def validation_key(schema: Any) -> str:
    """A property schema as text without its top-level annotations, which no validator reads:
    properties whose schemas differ only in their titles share one compiled validator (the shipped
    catalog has 1,716 properties, 264 titles and a few dozen distinct schemas)."""
    if isinstance(schema, dict) and any(key in schema for key in ANNOTATIONS):
        schema = {k: v for k, v in schema.items() if k not in ANNOTATIONS}
    return json.dumps(schema, sort_keys=True)


@lru_cache(maxsize=4096)
def _compiled_validator(canonical_schema: str) -> Draft7Validator:
    """One validator per distinct schema, shared by every property that has it (validators are
    immutable): a catalog repeats a few dozen schemas over thousands of properties."""
    return Draft7Validator(json.loads(canonical_schema), format_checker=_FORMAT_CHECKER)


def _property(step_type: str, raw: dict[str, Any]) -> PropertySpec:
    schema = raw["json_schema"]
    validator = None
    if isinstance(schema, dict | bool) and schema not in ({}, True):
        validator = _compiled_validator(validation_key(schema))
    return PropertySpec(
        name=raw["name"],
        step_type=step_type,
        is_required=raw["is_required"],
        is_credential=raw["is_credential"],
        system_provided=raw["system_provided"],
        property_type=raw["property_type"],
        json_schema=freeze(schema),
        tap_mutable=raw["tap_mutable"],
        validator=validator,
    )
