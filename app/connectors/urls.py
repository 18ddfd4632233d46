"""URL templates of report cards (``api.base_url``, a request's ``url``/``path``, ``auth``'s
``token_url`` and login URL, ``oauth``'s authorize, token and revocation URLs): each value a template puts in
a URL is escaped for the part of the URL it lands in, so a property value can never move a call —
credential included — to a host, port, path or query the card did not name.

Where a value lands is read from the URL written before it (the card's text and the values
already placed), and for a host also from the text right after it:

* **whole URL** — the template starts with the value (``{{ properties.api_url }}/v1``): the value
  must itself be an ``http``/``https`` URL with a host name or address, no user info, query or
  fragment, printable ASCII only. The card lets the user name the server; the network rules
  (app/connectors/network.py) still judge the address it resolves to, at connection time.
* **whole host** — the value fills the host alone (``https://{{ properties.host }}/api``): a
  host name (dot-separated labels of letters, digits and ``-``, each at most 63 characters) or
  an IP address.
* **part of a host** — anything else in the host (``https://{{ properties.subdomain }}.zendesk.com``,
  ``api-{{ properties.region }}.example.com``): exactly one DNS label (letters, digits and ``-``,
  no dot), so the host keeps the suffix the card fixes. Dots are refused here on purpose: a
  value ``evil.example#`` or ``127.0.0.1:80/x?`` must not become the host.
* **port** — digits, 1 to 65535.
* **path** — percent-encoded as one segment (``/``, ``?``, ``#``, ``%`` and every non-ASCII or
  control character encoded); a segment that is the value alone may not be ``.`` or ``..``.
* **query or fragment** — percent-encoded whole (``&``, ``=``, ``#`` included).
* **scheme or user info** — never taken from a value.

Non-ASCII values are refused in a host rather than converted (IDNA would turn a look-alike
Cyrillic ``а`` or a full-width dot ``．`` into another host), and a label may not start with
``xn--``: a punycode label is a look-alike written in ASCII. In a path or query they are encoded.

:class:`UrlValueRefused` names the value's position and the reason; the caller names the
property (a 422 at save time, a check error otherwise). The value itself is never in a message.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from ..catalog.cards import ReportCard
from ..errors import Problem
from ..templating import TemplateProblem, render_marked
from .network import host_problem, literal_address, port_number

SCHEMES = ("http", "https")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_LABEL_PART = re.compile(r"[A-Za-z0-9-]{1,63}")
_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]+")


class UrlValueRefused(ValueError):
    """A value a URL template cannot take. ``value`` is kept for the caller to find the property
    it came from; it is never part of the message."""

    def __init__(self, position: str, reason: str, value: str) -> None:
        super().__init__(f"a value in the {position} of the URL {reason}")
        self.position = position
        self.reason = reason
        self.value = value


def render_url(template: str, context: Mapping[str, Any]) -> str:
    """``template`` rendered over ``context`` with every value escaped for its place (see the
    module docstring). Raises :class:`UrlValueRefused`, and ``TemplateProblem`` for a missing name."""
    pieces = render_marked(template, context)
    url = ""
    for index, (text, is_value) in enumerate(pieces):
        if not is_value:
            url += text
            continue
        following = next((t for t, v in pieces[index + 1:] if not v), "")
        url += _escaped(text, url, following)
    _check_rendered(url)
    return url


def _escaped(value: str, before: str, after: str) -> str:
    if not before:
        return _whole_url(value)
    scheme, sep, rest = before.partition("://")
    if sep and not any(c in rest for c in "/?#"):
        return _in_authority(value, rest, after)
    if not sep and ":" in scheme and not any(c in scheme for c in "/?#"):
        raise UrlValueRefused("scheme", "is not taken from a value", value)
    tail = rest if sep else before  # without '://', a relative reference (a request's ``path``)
    if "#" in tail or "?" in tail:
        return quote(value, safe="")
    return _path_segment(value, tail, after)


def _in_authority(value: str, authority: str, after: str) -> str:
    if "@" in value or (not authority and after.startswith("@")) or "@" in after.split("/")[0]:
        raise UrlValueRefused("user info", "is not taken from a value", value)
    host_so_far = authority.rsplit("@", 1)[-1]
    if ":" in host_so_far.lstrip("[").split("]")[-1]:
        if port_number(value) is None or not value.isascii() or not value.isdigit():
            raise UrlValueRefused("port", "must be a port number from 1 to 65535", value)
        return value
    if not host_so_far and (not after or after[0] in "/?#:"):
        return _whole_host(value)
    if not _LABEL_PART.fullmatch(value):
        raise UrlValueRefused("host", "must be one DNS label: letters, digits and '-' only, at most 63 "
                                      "(no '.', '/', ':', '@', space or non-ASCII character)", value)
    if not host_so_far or host_so_far.endswith("."):  # the value starts a label
        if value.startswith("-"):
            raise UrlValueRefused("host", "may not start a DNS label with '-'", value)
        _no_punycode(value, [value])
    return value


def _whole_host(value: str) -> str:
    if literal_address(value) is not None and not value.startswith("["):
        return f"[{value}]" if ":" in value else value
    labels = value.rstrip(".").split(".") if value else [""]
    if not value.isascii() or not all(_LABEL.fullmatch(label) for label in labels) or len(value) > 253:
        raise UrlValueRefused("host", "must be a host name (labels of letters, digits and '-', at most 63 "
                                      "each, separated by '.') or an IP address", value)
    _no_punycode(value, labels)
    return value


def _no_punycode(value: str, labels: list[str]) -> None:
    if any(label.lower().startswith("xn--") for label in labels):
        raise UrlValueRefused("host", "may not hold an 'xn--' (internationalised) label", value)


def _path_segment(value: str, before: str, after: str) -> str:
    whole_segment = before.endswith("/") and (not after or after[0] in "/?#")
    if whole_segment and value in (".", ".."):
        raise UrlValueRefused("path", f"may not be {value!r}", value)
    return quote(value, safe="")


def _whole_url(value: str) -> str:
    if not _PRINTABLE_ASCII.fullmatch(value or " "):
        raise UrlValueRefused("start", "must be an http or https URL (printable ASCII, no space)", value)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError:
        raise UrlValueRefused("start", "must be an http or https URL", value) from None
    if parts.scheme.lower() not in SCHEMES or not parts.hostname:
        raise UrlValueRefused("start", "must be an http or https URL with a host", value)
    if "@" in parts.netloc or parts.query or parts.fragment or "?" in value or "#" in value or "\\" in value:
        raise UrlValueRefused("start", "must be an http or https URL without user info, query or fragment",
                              value)
    if host_problem(parts.hostname) is not None:
        raise UrlValueRefused("start", "must name a host name or IP address", value)
    _no_punycode(value, parts.hostname.split("."))
    return value


def _check_rendered(url: str) -> None:
    """The URL as a whole: what the card's own text fixes must still hold once values are in."""
    if "://" not in url:
        return  # a relative reference, joined to a base URL checked on its own
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018
    except ValueError:
        raise UrlValueRefused("authority", "makes the URL invalid", "") from None
    if parts.scheme.lower() not in SCHEMES:
        raise UrlValueRefused("scheme", "must be http or https", "")
    if not parts.hostname or host_problem(parts.hostname) is not None:
        raise UrlValueRefused("host", "does not give a host name or IP address", "")


def url_templates(card: ReportCard) -> Iterator[str]:
    """Every URL template of ``card`` (its ``api``, ``auth``, requests' own ``auth`` and ``oauth``)."""
    auths = [card.auth]
    if card.api is not None:
        yield card.api.base_url
        requests = [card.api.check, *(stream.request for stream in card.api.streams)]
        for request in requests:
            yield from (t for t in (request.url, request.path) if t)
            if request.auth is not None:
                auths.append(request.auth)
    for auth in auths:
        yield from (t for t in (auth.token_url, auth.login.url if auth.login else None,
                                auth.login.path if auth.login else None) if t)
    if card.oauth is not None:
        yield from (t for t in (card.oauth.authorize_url, card.oauth.token_url, card.oauth.revocation_url) if t)


def url_problems(card: ReportCard, properties: Mapping[str, Any]) -> list[Problem]:
    """Save time: property values the card's URL templates refuse, each named by its property. A
    template naming a property not given yet has nothing to judge (the check renders it later)."""
    context = {"properties": {name: value for name, value in properties.items() if isinstance(value, str | int)},
               "account": {"id": 0}, "source": {"id": 0, "name": ""}}
    problems: dict[str, Problem] = {}
    for template in dict.fromkeys(url_templates(card)):
        try:
            render_url(template, context)
        except TemplateProblem:
            continue
        except UrlValueRefused as refused:
            name = refused_property(refused, properties)
            problems.setdefault(name, Problem.of_property(name, str(refused)))
    return list(problems.values())


def refused_property(refused: UrlValueRefused, properties: Mapping[str, Any]) -> str:
    """The property whose value a URL refused (the first one holding that value)."""
    return next((name for name, value in properties.items() if str(value) == refused.value and refused.value),
                "properties")
