"""A report card's ``singer`` section, parsed into a frozen :class:`SingerSpec`.

The section (``connector: "singer"``) says which tap checks and discovers sources of the type::

    "singer": {
      "requirement": "tap-hubspot>=4.5,<5",      # a PEP 508 requirement: a pin, a range or name @ URL
      "extra_requirements": ["setuptools<81"],   # optional: installed with it (what an old tap forgot)
      "executable": "tap-hubspot",               # the console script the requirement installs
      "capabilities": ["discover", "test"],      # discover (always), test (SDK --test), about (--about)
      "config": {                                # how the source's properties become the tap's config
        "rename": {"api_token": "token"},        #   property -> config key (default: the same name)
        "drop": ["frequency_in_minutes"],        #   properties the tap does not take
        "fixed": {"user_agent": "connect"},      #   values added whatever the source holds (they win)
        "types": {"port": "integer"}             #   config key -> integer | number | boolean | string | json
      },
      "network": {"hosts": ["host"], "urls": ["api_url"]},  # properties naming where the tap connects
      "limits": {"timeout_seconds": 600, "max_output_bytes": 67108864, "max_memory_bytes": 2147483648},
      "installable": false,                      # optional: the tap cannot be installed or started here …
      "not_installable_reason": "…"              # … and why (docs/tap-coverage.md)
    }

:func:`problems` lists everything wrong with a section at once, as (JSON path, reason) pairs the
catalog loader reports with the file name; :func:`parse_spec` builds the spec from a section that
has none.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

CAPABILITIES = ("discover", "test", "about")
CONFIG_TYPES = ("integer", "number", "boolean", "string", "json")
LIMIT_KEYS = ("timeout_seconds", "max_output_bytes", "max_memory_bytes")
SECTION_KEYS = ("requirement", "extra_requirements", "executable", "capabilities", "config", "network",
                "limits", "installable", "not_installable_reason")
NETWORK_KEYS = ("hosts", "urls")
CONFIG_KEYS = ("rename", "drop", "fixed", "types")
_EXECUTABLE_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


@dataclass(frozen=True)
class ConfigMapping:
    """How a source's properties become the tap's config (see :func:`..config.tap_config`)."""

    rename: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    drop: frozenset[str] = frozenset()
    fixed: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    types: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def property_for(self, config_key: str) -> str:
        """The property a config key comes from (the inverse of ``rename``)."""
        return next((name for name, key in self.rename.items() if key == config_key), config_key)


@dataclass(frozen=True)
class NetworkProperties:
    """The properties that name where the tap connects: a host name or address, or a URL. Their
    values pass the deployment's network rules before the tap runs."""

    hosts: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class LimitOverrides:
    """A card's own limits for its tap; ``None`` keeps the deployment's setting."""

    timeout_seconds: float | None = None
    max_output_bytes: int | None = None
    max_memory_bytes: int | None = None


@dataclass(frozen=True)
class SingerSpec:
    requirement: str
    package: str  # the requirement's distribution name, canonical (``tap-hubspot``)
    extra_requirements: tuple[str, ...]
    executable: str
    capabilities: frozenset[str]
    config: ConfigMapping
    limits: LimitOverrides
    network: NetworkProperties = NetworkProperties()
    installable: bool = True
    not_installable_reason: str | None = None

    @property
    def tests_connection(self) -> bool:
        """Whether the check runs ``--test`` (Singer SDK taps) rather than ``--discover``."""
        return "test" in self.capabilities


class SpecError(ValueError):
    """A section that :func:`problems` would not pass."""


def problems(section: Any, property_names: Collection[str] | None = None) -> list[tuple[str, str]]:
    """Every problem of a ``singer`` section, as (JSON path from the card's root, reason).

    With ``property_names`` (the card's properties), ``rename`` and ``drop`` must name properties
    the card has: a mapping of a property that does not exist is a typo that would go unnoticed.
    """
    if not isinstance(section, Mapping):
        return [("$.singer", "must be an object")]
    found: list[tuple[str, str]] = []
    for key in section:
        if key not in SECTION_KEYS:
            found.append((f"$.singer.{key}", f"unknown key (allowed: {', '.join(SECTION_KEYS)})"))
    found += _requirement_problems(section.get("requirement"), "$.singer.requirement")
    extras = section.get("extra_requirements", [])
    if not isinstance(extras, list | tuple):
        found.append(("$.singer.extra_requirements", "must be a list of pip requirements"))
    else:
        for index, extra in enumerate(extras):
            found += _requirement_problems(extra, f"$.singer.extra_requirements[{index}]")
    executable = section.get("executable")
    if not isinstance(executable, str) or not executable or not set(executable) <= _EXECUTABLE_CHARACTERS:
        found.append(("$.singer.executable", "must be the name of a console script (letters, digits, . _ -)"))
    found += _capability_problems(section.get("capabilities", ["discover"]))
    found += _config_problems(section.get("config", {}), property_names)
    found += _network_problems(section.get("network", {}), property_names)
    found += _limit_problems(section.get("limits", {}))
    installable = section.get("installable", True)
    if not isinstance(installable, bool):
        found.append(("$.singer.installable", "must be true or false"))
    reason = section.get("not_installable_reason")
    if installable is False and not (isinstance(reason, str) and reason.strip()):
        found.append(("$.singer.not_installable_reason", "say why the tap cannot be installed"))
    elif reason is not None and not isinstance(reason, str):
        found.append(("$.singer.not_installable_reason", "must be a string"))
    return found


def _requirement_problems(requirement: Any, path: str) -> list[tuple[str, str]]:
    if not isinstance(requirement, str) or not requirement.strip():
        return [(path, "must be a pip requirement such as \"tap-hubspot>=4.5,<5\"")]
    try:
        parsed = Requirement(requirement)
    except InvalidRequirement as error:
        return [(path, f"not a valid requirement: {error}")]
    if parsed.marker is not None:
        return [(path, "environment markers are not allowed (the tap always installs)")]
    return []


def _capability_problems(capabilities: Any) -> list[tuple[str, str]]:
    if not isinstance(capabilities, list | tuple) or not all(isinstance(c, str) for c in capabilities):
        return [("$.singer.capabilities", "must be a list of strings")]
    found = [(f"$.singer.capabilities[{i}]", f"unknown capability (known: {', '.join(CAPABILITIES)})")
             for i, c in enumerate(capabilities) if c not in CAPABILITIES]
    if "discover" not in capabilities:
        found.append(("$.singer.capabilities", "must include discover: the service discovers through the tap"))
    return found


def _config_problems(config: Any, property_names: Collection[str] | None) -> list[tuple[str, str]]:
    if not isinstance(config, Mapping):
        return [("$.singer.config", "must be an object")]
    found = [(f"$.singer.config.{key}", f"unknown key (allowed: {', '.join(CONFIG_KEYS)})")
             for key in config if key not in CONFIG_KEYS]
    rename, drop = config.get("rename", {}), config.get("drop", [])
    if not isinstance(rename, Mapping) or not all(isinstance(v, str) and v for v in rename.values()):
        found.append(("$.singer.config.rename", "must map property names to config keys (strings)"))
        rename = {}
    if not isinstance(drop, list | tuple) or not all(isinstance(v, str) for v in drop):
        found.append(("$.singer.config.drop", "must be a list of property names"))
        drop = []
    if not isinstance(config.get("fixed", {}), Mapping):
        found.append(("$.singer.config.fixed", "must be an object of config keys and values"))
    types = config.get("types", {})
    if not isinstance(types, Mapping):
        found.append(("$.singer.config.types", "must map config keys to a type"))
    else:
        found += [(f"$.singer.config.types.{key}", f"must be one of {', '.join(CONFIG_TYPES)}")
                  for key, kind in types.items() if kind not in CONFIG_TYPES]
    if property_names is not None:
        found += [(f"$.singer.config.rename.{name}", f"no property {name!r} in this card")
                  for name in rename if name not in property_names]
        found += [(f"$.singer.config.drop[{i}]", f"no property {name!r} in this card")
                  for i, name in enumerate(drop) if name not in property_names]
    targets = [key for name, key in rename.items() if name not in drop]
    found += [(f"$.singer.config.rename.{name}", f"two properties become config key {key!r}")
              for name, key in rename.items() if targets.count(key) > 1]
    return found


def _network_problems(network: Any, property_names: Collection[str] | None) -> list[tuple[str, str]]:
    if not isinstance(network, Mapping):
        return [("$.singer.network", "must be an object")]
    found = [(f"$.singer.network.{key}", f"unknown key (allowed: {', '.join(NETWORK_KEYS)})")
             for key in network if key not in NETWORK_KEYS]
    for key in NETWORK_KEYS:
        names = network.get(key, [])
        if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
            found.append((f"$.singer.network.{key}", "must be a list of property names"))
        elif property_names is not None:
            found += [(f"$.singer.network.{key}[{i}]", f"no property {name!r} in this card")
                      for i, name in enumerate(names) if name not in property_names]
    return found


def _limit_problems(limits: Any) -> list[tuple[str, str]]:
    if not isinstance(limits, Mapping):
        return [("$.singer.limits", "must be an object")]
    found = []
    for key, value in limits.items():
        if key not in LIMIT_KEYS:
            found.append((f"$.singer.limits.{key}", f"unknown limit (known: {', '.join(LIMIT_KEYS)})"))
        elif isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            found.append((f"$.singer.limits.{key}", "must be a positive number"))
        elif key != "timeout_seconds" and not isinstance(value, int):
            found.append((f"$.singer.limits.{key}", "must be a whole number of bytes"))
    return found


def parse_spec(section: Mapping[str, Any]) -> SingerSpec:
    """The spec of a section :func:`problems` passes (a :class:`SpecError` otherwise)."""
    found = problems(section)
    if found:
        raise SpecError("; ".join(f"{path}: {reason}" for path, reason in found))
    config = section.get("config", {})
    limits = section.get("limits", {})
    return SingerSpec(
        requirement=section["requirement"],
        package=canonicalize_name(Requirement(section["requirement"]).name),
        extra_requirements=tuple(section.get("extra_requirements", ())),
        executable=section["executable"],
        capabilities=frozenset(section.get("capabilities", ["discover"])),
        config=ConfigMapping(
            rename=MappingProxyType(dict(config.get("rename", {}))),
            drop=frozenset(config.get("drop", ())),
            fixed=MappingProxyType(json.loads(json.dumps(_plain(config.get("fixed", {}))))),
            types=MappingProxyType(dict(config.get("types", {}))),
        ),
        network=NetworkProperties(hosts=tuple(section.get("network", {}).get("hosts", ())),
                                  urls=tuple(section.get("network", {}).get("urls", ()))),
        limits=LimitOverrides(
            timeout_seconds=_optional_float(limits.get("timeout_seconds")),
            max_output_bytes=limits.get("max_output_bytes"),
            max_memory_bytes=limits.get("max_memory_bytes"),
        ),
        installable=section.get("installable", True),
        not_installable_reason=section.get("not_installable_reason"),
    )


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _plain(value: Any) -> Any:
    """A JSON-able copy of a frozen card value (mapping proxies and tuples from app.catalog.cards)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value
