"""Load report card files, validate them, and build the in-memory catalog.

A file must be JSON, match ``report_card.schema.json``, and pass the checks a schema cannot
express: property names unique within the card, each step type at most once and in the canonical
order with ``fully_configured`` last, every ``json_schema`` a valid JSON Schema, ``system_values``
and ``oauth`` naming properties the card has. Problems are reported all at once, each with the
file, the JSON path of the fault and the reason.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import jsonschema_rs
from jsonschema import Draft7Validator, Draft202012Validator
from jsonschema.exceptions import SchemaError

from ..templating import TemplateProblem, render
from .access import AccessPolicy
from .cards import STEP_TYPES, ReportCard, validation_key
from .sections import SectionProblem

SCHEMA_PATH = Path(__file__).with_name("report_card.schema.json")
# What a system_values template may use (app/sources/writes.py renders it with real values).
SYSTEM_VALUES_CONTEXT = {"account": {"id": 1}, "source": {"id": 1, "name": "example"}}


@dataclass(frozen=True)
class CatalogProblem:
    file: str
    json_path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.json_path}: {self.reason}"


class CatalogError(Exception):
    def __init__(self, problems: list[CatalogProblem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s) in the report cards:\n{lines}")


class Catalog:
    """The source types, by type. Built once at start-up; read-only after."""

    def __init__(self, cards: dict[str, ReportCard], load_seconds: float,
                 access: AccessPolicy | None = None) -> None:
        self.cards = dict(sorted(cards.items()))
        self.load_seconds = load_seconds
        # Which access:false types this deployment lets accounts create (app/catalog/access.py).
        self.access = access if access is not None else AccessPolicy()
        self.by_alias: dict[str, str] = {alias: card.type for card in self.cards.values() for alias in card.aliases}
        self.list_json: bytes = json.dumps(
            [card.summary for card in self.cards.values()], separators=(",", ":")
        ).encode()

    def get(self, source_type: str) -> ReportCard | None:
        return self.cards.get(source_type)

    def resolve(self, name: str) -> ReportCard | None:
        """The card a name means: a type exactly (``platform.hubspot``), else an alias in any case
        (``hubspot``, ``HubSpot``). The Stitch dialect takes types only (:meth:`get`)."""
        card = self.cards.get(name)
        if card is not None:
            return card
        source_type = self.by_alias.get(name.lower())
        return self.cards[source_type] if source_type is not None else None

    def __len__(self) -> int:
        return len(self.cards)

    def __contains__(self, source_type: object) -> bool:
        return source_type in self.cards

    @property
    def managed_oauth_count(self) -> int:
        return sum(1 for card in self.cards.values() if card.managed_oauth)


@cache
def _file_validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@cache
def _compiled_file_validator() -> Any:
    """The same schema compiled by jsonschema-rs (about 100× faster): a file it finds valid skips
    the Python walk; one it refuses is walked by jsonschema, whose messages the operator reads
    (tests/test_catalog.py holds the two to the same verdicts)."""
    return jsonschema_rs.validator_for(json.loads(SCHEMA_PATH.read_text()))


def shape_problems(document: Any) -> list[tuple[str, str]]:
    """(JSON path, message) of each way ``document`` breaks the card file schema, in path order."""
    if _compiled_file_validator().is_valid(document):
        return []
    return [(error.json_path, error.message)
            for error in sorted(_file_validator().iter_errors(document), key=lambda e: list(e.path))]


@lru_cache(maxsize=4096)
def _property_schema_problem(canonical_schema: str) -> tuple[tuple[Any, ...], str] | None:
    """The first problem of a property's json_schema, checked once per distinct schema: a catalog
    repeats a few dozen schemas over thousands of properties (the shipped one: 29 in 1,336)."""
    try:
        Draft7Validator.check_schema(json.loads(canonical_schema))
    except SchemaError as error:
        return tuple(error.path), error.message
    return None


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _json_path(parts: Iterable[Any]) -> str:
    path = "$"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def check_document(document: Any, file: str) -> list[CatalogProblem]:
    """Every problem of one parsed report card file."""
    problems = [CatalogProblem(file, path, message) for path, message in shape_problems(document)]
    if problems:
        return problems  # the semantic checks below assume the shape is right
    seen_names: dict[str, str] = {}
    step_types = [step["type"] for step in document["steps"]]
    for index, step_type in enumerate(step_types):
        if step_types.index(step_type) != index:
            problems.append(CatalogProblem(
                file, f"$.steps[{index}].type", f"step type {step_type!r} appears twice"))
    order = [STEP_TYPES.index(t) for t in step_types]
    if order != sorted(order):
        problems.append(CatalogProblem(
            file, "$.steps", f"steps must follow the order {', '.join(STEP_TYPES)}"))
    if step_types[-1] != "fully_configured":
        problems.append(CatalogProblem(file, "$.steps", "the last step must be fully_configured"))
    for s, step in enumerate(document["steps"]):
        if step["type"] not in ("form", "oauth") and step["properties"]:
            problems.append(CatalogProblem(
                file, f"$.steps[{s}].properties", f"a {step['type']} step has no properties"))
        for p, prop in enumerate(step["properties"]):
            path = f"$.steps[{s}].properties[{p}]"
            name = prop["name"]
            if name in seen_names:
                problems.append(CatalogProblem(
                    file, f"{path}.name", f"duplicate property name {name!r} (first at {seen_names[name]})"))
            else:
                seen_names[name] = path
            if prop["json_schema"] is not None:
                schema_problem = _property_schema_problem(validation_key(prop["json_schema"]))
                if schema_problem is not None:
                    error_path, message = schema_problem
                    problems.append(CatalogProblem(
                        file, _json_path(["steps", s, "properties", p, "json_schema", *error_path]),
                        f"invalid json_schema: {message}"))
    for name, value in document.get("system_values", {}).items():
        if name not in seen_names:
            problems.append(CatalogProblem(
                file, f"$.system_values.{name}", f"no property {name!r} in this card"))
        try:
            render(value, SYSTEM_VALUES_CONTEXT)
        except TemplateProblem as error:
            problems.append(CatalogProblem(file, f"$.system_values.{name}", f"template: {error}"))
    problems += _form_layout_problems(document.get("form_layout"), seen_names, file)
    if document.get("singer") is not None:
        from .singer_section import problems as singer_problems

        problems += [CatalogProblem(file, path, reason)
                     for path, reason in singer_problems(document["singer"], set(seen_names))]
    oauth = document.get("oauth")
    if oauth:
        if "oauth" not in step_types:
            problems.append(CatalogProblem(file, "$.oauth", "an oauth section needs an oauth step"))
        for section in ("client_properties", "token_properties", "callback_properties", "handshake_properties"):
            for key, name in oauth.get(section, {}).items():
                if name not in seen_names:
                    problems.append(CatalogProblem(
                        file, f"$.oauth.{section}.{key}", f"no property {name!r} in this card"))
    for role, name in ((document.get("database") or {}).get("properties") or {}).items():
        if name not in seen_names:
            problems.append(CatalogProblem(file, f"$.database.properties.{role}", f"no property {name!r} in this card"))
    if document.get("connector") == "database" and not document.get("database"):
        problems.append(CatalogProblem(file, "$.database", "a database connector needs a database section"))
    return problems


def _form_layout_problems(layout: Any, names: dict[str, str], file: str) -> list[CatalogProblem]:
    """A form layout may only name the card's properties and its own groups."""
    if not layout:
        return []
    groups = {group["id"] for group in layout["groups"]}
    problems = []
    for index, field in enumerate(layout["fields"]):
        if field["name"] not in names:
            problems.append(CatalogProblem(file, f"$.form_layout.fields[{index}].name",
                                           f"no property {field['name']!r} in this card"))
        if field["group"] not in groups:
            problems.append(CatalogProblem(file, f"$.form_layout.fields[{index}].group",
                                           f"no group {field['group']!r} in form_layout.groups"))
    return problems


def read_document(path: Path) -> tuple[Any, list[CatalogProblem]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return None, [CatalogProblem(str(path), "$", f"cannot read file: {error}")]
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicate_keys), []
    except ValueError as error:
        return None, [CatalogProblem(str(path), "$", f"not valid JSON: {error}")]


def card_files(location: Path) -> list[Path]:
    if location.is_dir():
        return sorted(location.glob("*.json"))
    return [location]


def check_paths(paths: Iterable[Path]) -> tuple[dict[str, ReportCard], list[CatalogProblem]]:
    """Validate files and folders. Within one folder two files of one type are an error; across
    folders the later folder wins (that is how operators add and override types)."""
    cards: dict[str, ReportCard] = {}
    problems: list[CatalogProblem] = []
    for location in paths:
        if not location.exists():
            problems.append(CatalogProblem(str(location), "$", "no such file or folder"))
            continue
        in_this_location: dict[str, str] = {}
        for file in card_files(location):
            document, file_problems = read_document(file)
            if not file_problems:
                file_problems = check_document(document, str(file))
            if file_problems:
                problems.extend(file_problems)
                continue
            source_type = document["type"]
            if source_type in in_this_location:
                problems.append(CatalogProblem(
                    str(file), "$.type",
                    f"type {source_type!r} is also defined in {in_this_location[source_type]}"))
                continue
            try:
                card = ReportCard(document, str(file))
            except SectionProblem as problem:  # a key the oauth, auth or api section does not have
                problems.append(CatalogProblem(str(file), problem.json_path, problem.reason))
                continue
            in_this_location[source_type] = str(file)
            cards[source_type] = card
    return cards, problems


def alias_problems(cards: dict[str, ReportCard]) -> list[CatalogProblem]:
    """An alias names one type: not two cards' alias, not another card's type. Checked over the
    merged catalog, since an operator's folder may add a card whose alias a shipped one has."""
    problems = []
    owners: dict[str, str] = {}
    lowered_types = {source_type.lower(): source_type for source_type in cards}
    for card in cards.values():
        for index, alias in enumerate(card.aliases):
            other = owners.get(alias) or lowered_types.get(alias)
            if other is not None and other != card.type:
                problems.append(CatalogProblem(card.path, f"$.aliases[{index}]",
                                               f"alias {alias!r} is already {other}'s"))
            owners.setdefault(alias, card.type)
    return problems


def split_paths(setting: str) -> list[Path]:
    return [Path(part) for part in setting.split(os.pathsep) if part.strip()]


def load_catalog(setting: str, access: AccessPolicy | None = None) -> Catalog:
    started = time.perf_counter()
    cards, problems = check_paths(split_paths(setting))
    problems += alias_problems(cards)
    if problems:
        raise CatalogError(problems)
    return Catalog(cards, time.perf_counter() - started, access)
