"""What the ``pattern`` of a property schema asks for, in words and, where it is a closed list of
literals, as that list (the connect page turns it into a select or a checkbox).

Stitch's cards write closed lists as regular expressions: ``^1$|^30$|^60$`` or ``^(true|false)$``.
Nobody filling in a form should have to read one, so every message and hint goes through here.
"""

from __future__ import annotations

import re
from functools import lru_cache

# A literal: letters, digits, '_', '-', '.', ' ' with the regex escapes Stitch's cards use.
_LITERAL = r"(?:[A-Za-z0-9_ -]|\\\.|\\-)+"
_ANCHORED_EACH = re.compile(rf"^\^({_LITERAL})\$(?:\|\^({_LITERAL})\$)*$")
_GROUPED = re.compile(rf"^\^\(({_LITERAL}(?:\|{_LITERAL})*)\)\$?$")
_PLAIN = re.compile(rf"^\^?({_LITERAL}(?:\|{_LITERAL})+)\$?$")

# Patterns that are not lists, as the cards use them, in words.
KNOWN_PATTERNS: dict[str, str] = {
    r"^\d{4}-\d{2}-\d{2}T00:00:00Z$": "a date at midnight UTC such as 2024-01-31T00:00:00Z",
    r"^\d+": "a whole number such as 100",
    r"^\d+$": "a whole number such as 100",
    r"^\d+.?\d*$": "a number such as 1.5",
    r"^[0-9]{12}$": "exactly 12 digits",
    r"^(\d|[1-9]\d|100)$": "a whole number from 0 to 100",
    r"^([1-9]|[12][0-9]|30|60|90)$": "a whole number from 1 to 30, or 60 or 90",
}


_DIGITS = re.compile(r"^\^(?:\\d|\[0-9\])(?:\{(\d+)(?:,(\d*))?\}|(\+))\$$")


def _digits_words(pattern: str) -> str | None:
    """``^[0-9]{2,5}$`` → "2 to 5 digits", ``^\\d{12}$`` → "exactly 12 digits"."""
    match = _DIGITS.match(pattern)
    if match is None:
        return None
    low, high, plus = match.groups()
    if plus:
        return "a whole number such as 100"
    if high is None:
        return f"exactly {low} digits"
    return f"{low} or more digits" if high == "" else f"{low} to {high} digits"


def _unescape(literal: str) -> str:
    return literal.replace("\\.", ".").replace("\\-", "-")


@lru_cache(maxsize=256)
def literal_options(pattern: str) -> tuple[str, ...] | None:
    """The values of a pattern that is an alternation of literals, in its order; else None.

    ``^1$|^30$|^60$`` and ``^(REST|BULK)$`` are lists. ``^(true|false)`` (no ``$``: any text that
    starts with true or false) is taken as the list it is meant to be; the schema still decides.
    """
    for shape in (_GROUPED, _PLAIN):
        match = shape.match(pattern)
        if match:
            return tuple(_unescape(part) for part in match.group(1).split("|"))
    if _ANCHORED_EACH.match(pattern):
        return tuple(_unescape(part[1:-1]) for part in pattern.split("|"))
    return None


def is_boolean_pattern(pattern: str | None) -> bool:
    return pattern is not None and set(literal_options(pattern) or ()) == {"true", "false"} \
        and len(literal_options(pattern) or ()) == 2


def _one_of(options: tuple[str, ...]) -> str:
    if len(options) == 1:
        return options[0]
    return ", ".join(options[:-1]) + " or " + options[-1]


def pattern_words(pattern: str) -> str:
    """What a value matching ``pattern`` looks like, to follow "must be"."""
    if pattern in KNOWN_PATTERNS:
        return KNOWN_PATTERNS[pattern]
    digits = _digits_words(pattern)
    if digits is not None:
        return digits
    options = literal_options(pattern)
    if options is not None:
        if is_boolean_pattern(pattern):
            return "true or false"
        return "one of " + _one_of(options) if len(options) > 1 else options[0]
    return "in the form this field expects (see its description)"
