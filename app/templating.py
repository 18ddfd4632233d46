"""Jinja templates of report cards (``system_values``, ``auth``, ``api``), rendered in a sandbox.

A template sees only the context it is given (``properties``, ``account``, ``source``); a missing
name is an error rather than an empty string, so a card that names a property the source lacks
fails loudly instead of sending an empty credential. The one exception is a value the context
marks :class:`Absent` (an optional property the source has not provided, app/connectors/context.py):
it renders as ``""``.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

_environment = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


class TemplateProblem(Exception):
    pass


class Absent(Undefined):
    """A value that may be left out, and was: it renders as ``""`` and is falsy, yet it is not
    ``defined``, so ``{{ x | default('y') }}`` gives ``y`` and ``{% if x is defined %}`` is false.
    Looking into it (``x.y``, ``x[0]``) is an error, as for any missing name."""

    __slots__ = ()


def absent(name: str) -> Absent:
    return Absent(name=name)


@lru_cache(maxsize=4096)
def _compile(source: str):  # type: ignore[no-untyped-def]
    return _environment.from_string(source)


def is_template(value: str) -> bool:
    return "{{" in value or "{%" in value


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every string inside ``value`` (dicts and lists are walked)."""
    if isinstance(value, str):
        if not is_template(value):
            return value
        try:
            return _compile(value).render(**context)
        except TemplateError as error:
            # The message names the missing variable, never a value.
            raise TemplateProblem(str(error)) from None
    if isinstance(value, Mapping):
        return {k: render(v, context) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render(v, context) for v in value]
    return value
