"""The step machine: where a source stands, derived from facts, never stored.

``derive_step(card, facts)`` is a pure function. A ``form`` or ``oauth`` step is complete when every
``is_required`` property of it is provided (whatever its ``property_type``: read-only ones are
filled by the service at creation); ``discover_schema`` when the latest connection check and
discovery for the current properties succeeded; ``field_selection`` when at least one stream is
selected; ``fully_configured`` never (it is where a finished source stands).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..catalog.cards import CREDENTIAL_STEP_TYPES, ReportCard, Step


@dataclass(frozen=True)
class SourceFacts:
    provided: frozenset[str] = frozenset()
    discovery_succeeded: bool = False
    stream_selected: bool = False


@dataclass(frozen=True)
class StepPosition:
    number: int  # 1-based index into the card's steps
    type: str


def step_complete(step: Step, facts: SourceFacts) -> bool:
    if step.type in CREDENTIAL_STEP_TYPES:
        return all(p.name in facts.provided for p in step.required)
    if step.type == "discover_schema":
        return facts.discovery_succeeded
    if step.type == "field_selection":
        return facts.stream_selected
    return False  # fully_configured is terminal


def credential_steps_complete(card: ReportCard, provided: frozenset[str]) -> bool:
    """Whether every required property of the card's ``form`` and ``oauth`` steps is provided:
    what a connection check needs before it can run."""
    facts = SourceFacts(provided=provided)
    return all(step_complete(step, facts) for step in card.steps if step.type in CREDENTIAL_STEP_TYPES)


def derive_step(card: ReportCard, facts: SourceFacts) -> StepPosition:
    for number, step in enumerate(card.steps, start=1):
        if not step_complete(step, facts):
            return StepPosition(number, step.type)
    # The loader guarantees fully_configured is the last step, so this is never reached for a
    # loaded card; a card without it counts as finished at its last step.
    return StepPosition(len(card.steps), card.steps[-1].type)
