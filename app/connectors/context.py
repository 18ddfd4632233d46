"""What the templates of a card's ``auth`` and ``api`` sections see, and rendering them.

The context holds the source's properties with credentials decrypted: it is built for one call,
kept in memory only, and never logged (every opened value is also known to app.redaction).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar, cast

from ..crypto import Keyring
from ..models import Source
from ..sources.credentials import decrypted_properties
from ..templating import TemplateProblem, render
from .errors import AuthConfigurationError


def template_context(keyring: Keyring, source: Source) -> dict[str, Any]:
    return {
        "properties": decrypted_properties(keyring, source),
        "account": {"id": source.account_id},
        "source": {"id": source.id, "name": source.name},
    }


Section = TypeVar("Section")


def rendered(section: Section, context: Mapping[str, Any], where: str) -> Section:
    """A copy of a card section (app/catalog/sections.py), or of a string of one, with every
    template rendered: strings, the values of mappings and lists, and nested sections.

    A template naming a property the source lacks is an :class:`AuthConfigurationError`: sending
    an empty credential would only earn a confusing 401.
    """
    try:
        return cast(Section, _rendered(section, context))
    except TemplateProblem as error:
        raise AuthConfigurationError(f"{where}: {error}") from None


def _rendered(value: Any, context: Mapping[str, Any]) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{field.name: _rendered(getattr(value, field.name), context)
                                             for field in dataclasses.fields(value)})
    if isinstance(value, Mapping):
        return {key: _rendered(item, context) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return tuple(_rendered(item, context) for item in value)
    return render(value, context)
