"""Which source types a deployment lets accounts create.

A card whose ``details.access`` is false (Stitch: deprecated types, alpha ones, types the plan
does not include) cannot be created, as Stitch answers ``AccessDenied``; the operator may allow
such types explicitly with ``CONNECT_ALLOWED_DEPRECATED_TYPES`` (comma-separated types, or ``*``).
Sources that exist already keep working: only creating new ones is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import AccessDenied
from .cards import ReportCard


@dataclass(frozen=True)
class AccessPolicy:
    """The operator's exceptions to ``details.access: false``."""

    allowed: frozenset[str] = frozenset()
    allow_all: bool = False

    @classmethod
    def from_setting(cls, setting: str | None) -> AccessPolicy:
        names = frozenset(part.strip() for part in (setting or "").split(",") if part.strip())
        return cls(allowed=names - {"*"}, allow_all="*" in names)

    def may_create(self, card: ReportCard) -> bool:
        if card.details.get("access", True) is not False:
            return True
        return self.allow_all or card.type in self.allowed


def access_denied(card: ReportCard, policy: AccessPolicy) -> AccessDenied | None:
    """The 403 for creating a source of ``card``'s type, or None when it may be created."""
    if policy.may_create(card):
        return None
    successor = card.upgrade_type
    state = card.details.get("pipeline_state")
    if successor:
        message = f"{card.type} is {state or 'no longer available'}: create a {successor} source instead"
    elif state in ("deprecated", "alpha"):
        message = f"you do not have access to source type {card.type}: it is {state}"
    else:
        message = f"you do not have access to source type {card.type}"
    reason = f"not available in this deployment (details.access is false; pipeline_state {state})"
    detail = {"field": "type", "reason": reason}
    if successor:
        detail["upgrade_available"] = successor
    return AccessDenied(message, details=[detail])
