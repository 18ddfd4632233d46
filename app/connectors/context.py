"""What the templates of a card's ``auth`` and ``api`` sections see, and rendering them.

The context holds the source's properties with credentials decrypted: it is built for one call,
kept in memory only, and never logged (every opened value is also known to app.redaction).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..catalog.frozen import thaw
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


def rendered(section: Any, context: Mapping[str, Any], where: str) -> Any:
    """A plain copy of a (frozen) card section with every template rendered.

    A template naming a property the source lacks is an :class:`AuthConfigurationError`: sending
    an empty credential would only earn a confusing 401.
    """
    try:
        return render(thaw(section), context)
    except TemplateProblem as error:
        raise AuthConfigurationError(f"{where}: {error}") from None
