"""What the templates of a card's ``auth`` and ``api`` sections see, and rendering them.

The context holds the source's properties with credentials decrypted: it is built for one call,
kept in memory only, and never logged (every opened value is also known to app.redaction).

A property the source has not provided is, in ``properties``:

* an **optional** one of the card (``is_required: false``): present, rendering as ``""`` but not
  ``defined`` (app/templating.py:Absent), so a card may write ``"password": "{{
  properties.password }}"`` for a password the provider lets users leave empty (Chargebee takes the
  API key as the username and no password), and ``{{ properties.region | default('us') }}`` still
  gives ``us``;
* a **required** one, or a name the card does not have: missing, and naming it is an
  :class:`AuthConfigurationError`, so no request goes out with a credential left empty.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar, cast

from ..catalog.cards import ReportCard
from ..crypto import Keyring
from ..models import Source
from ..sources.credentials import decrypted_properties
from ..templating import TemplateProblem, absent, render
from .errors import AuthConfigurationError
from .urls import UrlValueRefused, render_url

# The fields of card sections that hold a URL or a part of one: rendered with each value escaped
# for its place in the URL (app/connectors/urls.py).
URL_FIELDS = frozenset({"base_url", "url", "path", "token_url", "authorize_url"})


def template_context(keyring: Keyring, source: Source, card: ReportCard) -> dict[str, Any]:
    return context_of(card, decrypted_properties(keyring, source), source.account_id, source.id, source.name)


def context_of(card: ReportCard, provided: Mapping[str, Any], account_id: int, source_id: int,
               source_name: str) -> dict[str, Any]:
    """The context from properties already opened (a connector's :class:`~app.connectors.base.SourceTarget`)."""
    left_out = {name: absent(name) for name, spec in card.properties.items()
                if not spec.is_required and name not in provided}
    return {
        "properties": {**left_out, **provided},
        "account": {"id": account_id},
        "source": {"id": source_id, "name": source_name},
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
    except (TemplateProblem, UrlValueRefused) as error:
        raise AuthConfigurationError(f"{where}: {error}") from None


def rendered_url(template: str, context: Mapping[str, Any], where: str) -> str:
    """A URL template of a card rendered (app/connectors/urls.py), errors as for :func:`rendered`."""
    try:
        return render_url(template, context)
    except (TemplateProblem, UrlValueRefused) as error:
        raise AuthConfigurationError(f"{where}: {error}") from None


def _rendered(value: Any, context: Mapping[str, Any]) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{field.name: _rendered_field(field.name, getattr(value, field.name),
                                                                         context)
                                             for field in dataclasses.fields(value)})
    if isinstance(value, Mapping):
        return {key: _rendered(item, context) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return tuple(_rendered(item, context) for item in value)
    return render(value, context)


def _rendered_field(name: str, value: Any, context: Mapping[str, Any]) -> Any:
    if name in URL_FIELDS and isinstance(value, str):
        return render_url(value, context)
    return _rendered(value, context)
