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
# Every ``{{ … }}`` output fenced by two private-use characters, so the caller can tell the card's
# own text from the values put in it (app/connectors/urls.py escapes each for its place in a URL).
_OPEN, _CLOSE = "\ue000", "\ue001"
_marked_environment = ImmutableSandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, finalize=lambda value: f"{_OPEN}{value}{_CLOSE}")


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


@lru_cache(maxsize=1024)
def _compile_marked(source: str):  # type: ignore[no-untyped-def]
    return _marked_environment.from_string(source)


def render_marked(source: str, context: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """``source`` rendered as pieces ``(text, is_value)``: the template's own text, and each
    ``{{ … }}`` output apart (``is_value``), in order. A value holding a fence character is a
    :class:`TemplateProblem` (the fences are private-use characters no URL or name needs)."""
    if not is_template(source):
        return [(source, False)]
    try:
        text = _compile_marked(source).render(**context)
    except TemplateError as error:
        raise TemplateProblem(str(error)) from None
    pieces: list[tuple[str, bool]] = []
    for i, chunk in enumerate(text.split(_OPEN)):
        if i == 0:
            pieces.append((chunk, False))
            continue
        value, fence, rest = chunk.partition(_CLOSE)
        if not fence or _CLOSE in rest:
            raise TemplateProblem("a value holds a private-use character (U+E000 or U+E001)")
        pieces += [(value, True), (rest, False)]
    return [piece for piece in pieces if piece[0] or piece[1]]


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
