"""Shared pieces of the Singer connector tests: report cards with a ``singer`` section, targets,
and the fake tap (tests/taps/fake_tap) installed once per session with the operator's code path."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from app.catalog.cards import ReportCard
from app.catalog.singer_section import parse_spec
from app.connectors.base import SourceTarget
from app.connectors.singer.connector import ConfigChange, SingerConnector
from app.connectors.singer.environments import InstalledTap, TapEnvironments
from app.connectors.singer.runner import RunLimits

FAKE_TAP = Path(__file__).resolve().parent / "taps" / "fake_tap"
FAKE_TYPE = "test.singer-fake"
_source_ids = itertools.count(1000)


def _property(name: str, *, credential: bool = False, required: bool = True) -> dict[str, Any]:
    return {"name": name, "is_required": required, "is_credential": credential, "system_provided": False,
            "property_type": "user_provided", "json_schema": {"type": "string"}, "tap_mutable": False}


def singer_document(source_type: str, singer: Mapping[str, Any], form: list[dict[str, Any]] | None = None,
                    ) -> dict[str, Any]:
    """A report card file whose ``singer`` section is ``singer`` and whose form is ``form``."""
    form = form if form is not None else [
        _property("mode", required=False), _property("username"), _property("password", credential=True),
        _property("refresh_token", credential=True, required=False), _property("frequency_in_minutes", required=False)]
    return {
        "type": source_type, "display_name": f"{source_type} (test)", "connector": "singer",
        "steps": [{"type": "form", "properties": form}, {"type": "discover_schema", "properties": []},
                  {"type": "field_selection", "properties": []}, {"type": "fully_configured", "properties": []}],
        "singer": dict(singer),
    }


def fake_singer_section(**overrides: Any) -> dict[str, Any]:
    section: dict[str, Any] = {"requirement": f"tap-fake @ {FAKE_TAP.as_uri()}", "executable": "tap-fake",
                               "capabilities": ["discover"], "config": {"drop": ["frequency_in_minutes"]}}
    section.update(copy.deepcopy(overrides))
    return section


def fake_card(source_type: str = FAKE_TYPE, **overrides: Any) -> ReportCard:
    return ReportCard(singer_document(source_type, fake_singer_section(**overrides)), f"<test {source_type}>")


def target(card: ReportCard, properties: Mapping[str, Any], *, generation: int = 1,
           source_id: int | None = None) -> SourceTarget:
    return SourceTarget(source_id=source_id or next(_source_ids), account_id=1, name="a source",
                        config_generation=generation, card=card, properties=dict(properties))


class Changes(list[ConfigChange]):
    """A config-change sink that keeps what it is handed."""

    def __call__(self, change: ConfigChange) -> None:
        self.append(change)


def connector(environments: TapEnvironments, *, changes: Changes | None = None, **limits: Any) -> SingerConnector:
    settings = {"timeout": 20.0, "max_output_bytes": 4 * 1024 * 1024, "max_memory_bytes": 1024 ** 3, **limits}
    return SingerConnector(environments, RunLimits(**settings), on_config_change=changes)


@pytest.fixture(scope="session")
def fake_tap_installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TapEnvironments, InstalledTap]]:
    """The fake tap, installed by uv as ``flask connect taps install`` installs a tap."""
    environments = TapEnvironments(tmp_path_factory.mktemp("taps"))
    tap = environments.install(FAKE_TYPE, parse_spec(fake_card().singer))
    yield environments, tap


@pytest.fixture()
def taps(fake_tap_installed: tuple[TapEnvironments, InstalledTap]) -> TapEnvironments:
    return fake_tap_installed[0]
