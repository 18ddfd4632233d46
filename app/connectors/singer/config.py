"""A source's properties as a tap's config, and what a tap changed in its config file.

By default a property becomes the config key of the same name, as Stitch does (a Stitch report
card's properties *are* its tap's config). A card's ``singer.config`` drops properties the tap does
not take, renames others, adds fixed values (a fixed value wins over a property mapped to the same
key) and converts values a tap needs typed (``"5432"`` → ``5432``). Properties without a value are
left out: a tap applies its own default to a missing key, never to ``null``. As Stitch does, every
tap is also given a ``user_agent`` (``CONNECT_TAP_USER_AGENT``) unless the source or card sets one:
many singer-io taps require the key (their ``check_config`` refuses to start without it) and send
it to the provider.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ...catalog.singer_section import ConfigMapping

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


class ConfigConversionError(ValueError):
    """A property value the tap needs typed does not convert; names the property, never the value."""

    def __init__(self, property_name: str, kind: str) -> None:
        super().__init__(f"property {property_name!r} must be {'an' if kind == 'integer' else 'a'} {kind} "
                         "for this source type's connector")
        self.property_name = property_name


def tap_config(mapping: ConfigMapping, properties: Mapping[str, Any],
               defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The config file's content for one run. ``defaults`` (the deployment's ``user_agent``) fill
    keys that neither a property nor a fixed value gives."""
    config: dict[str, Any] = dict(defaults or {})
    for name, value in properties.items():
        if name in mapping.drop or value is None:
            continue
        config[mapping.rename.get(name, name)] = value
    config.update(json.loads(json.dumps(dict(mapping.fixed))))
    for key, kind in mapping.types.items():
        if key in config:
            config[key] = _converted(config[key], kind, mapping.property_for(key))
    return config


def _converted(value: Any, kind: str, property_name: str) -> Any:
    try:
        if kind == "integer":
            return _integer(value)
        if kind == "number":
            return _number(value)
        if kind == "boolean":
            return _boolean(value)
        if kind == "json":
            return json.loads(value) if isinstance(value, str) else value
        return value if isinstance(value, str) else json.dumps(value) if isinstance(value, dict | list) else str(value)
    except (TypeError, ValueError):
        raise ConfigConversionError(property_name, kind) from None


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("a boolean is not an integer")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("not a whole number")
    return int(value.strip()) if isinstance(value, str) else int(value)


def _number(value: Any) -> int | float:
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    if isinstance(value, int | float):
        return value
    text = value.strip()
    return int(text) if text.lstrip("-").isdigit() else float(text)


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("not a boolean")


def config_changes(written: Mapping[str, Any], read_back: Any) -> dict[str, Any]:
    """The keys a tap added or changed in its config file during a run (a rotated refresh token).

    A key the tap removed is not a change: a tap may rewrite its file with only what it keeps, and
    dropping a stored credential on that account would lose it.
    """
    if not isinstance(read_back, Mapping):
        return {}
    return {key: value for key, value in read_back.items()
            if key not in written or written[key] != value}
