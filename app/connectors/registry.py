"""The connectors of this deployment: one per kind, built in ``create_app``.

``for_card`` gives the connector a card names (``http`` for a card in the older format), or None;
``availability`` says in plain words whether this deployment can configure the type end to end;
``destination_problems`` is the save-time half of the network rules (a refused *literal* address
is a 422 before anything is stored; names are judged when the check resolves them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from flask import Flask, current_app

from ..catalog.cards import ReportCard
from ..crypto import get_keyring
from ..db import get_db
from ..errors import Problem
from .base import Availability, Connector
from .database import DatabaseConnector
from .http_connector import HttpConnector
from .network import DestinationRefused, NetworkPolicy
from .network import init_app as init_network
from .singer.connector import AddressCheck, SingerConnector
from .singer.rotation import RotatedProperties
from .tokens import TokenSettings
from .urls import url_problems

EXTENSION_KEY = "connect.connectors"
NOT_CHECKABLE = "this source type cannot be checked by this deployment yet"


@runtime_checkable
class ChecksDestinations(Protocol):
    """A connector that can tell, before anything is saved, that the properties name a refused place."""

    def destination_problems(self, card: ReportCard, properties: Mapping[str, Any]) -> list[Problem]:
        ...


class Connectors:
    """Kind → connector."""

    def __init__(self, connectors: Mapping[str, Connector]) -> None:
        self._by_kind = dict(connectors)

    def for_card(self, card: ReportCard) -> Connector | None:
        return self._by_kind.get(card.connector) if card.connector else None

    def of_kind(self, kind: str) -> Connector | None:
        return self._by_kind.get(kind)

    def availability(self, card: ReportCard) -> Availability:
        connector = self.for_card(card)
        if connector is None:
            return Availability(False, NOT_CHECKABLE)
        return connector.availability(card)

    def destination_problems(self, card: ReportCard, properties: Mapping[str, Any]) -> list[Problem]:
        # URL templates first: a value they refuse never reaches a connector's own judgement.
        refused = url_problems(card, properties)
        if refused:
            return refused
        connector = self.for_card(card)
        if isinstance(connector, ChecksDestinations):
            return connector.destination_problems(card, properties)
        return []


def init_app(app: Flask) -> Connectors:
    """The network policy and the connectors, from the app's config (after db and crypto)."""
    policy = init_network(app)
    settings = TokenSettings.from_config(app.config, network=policy)
    connectors = Connectors({
        "http": HttpConnector(get_db(app).Session, get_keyring(app), settings,
                              answer_limit=int(app.config.get("SOURCE_ANSWER_MAX_BYTES", 10_485_760))),
        "database": DatabaseConnector(policy, timeout=settings.http_timeout),
        # Taps installed by the operator (flask connect taps install); what a tap rotates in its
        # config file is kept with the token store's guarantees.
        "singer": SingerConnector.from_config(
            app.config, app.instance_path, check_address=address_refusal(policy),
            on_config_change=RotatedProperties(get_db(app).Session, get_keyring(app))),
    })
    app.extensions[EXTENSION_KEY] = connectors
    return connectors


def address_refusal(policy: NetworkPolicy) -> AddressCheck:
    """The network rules as the Singer connector asks them before a run: why a host a tap is
    pointed at is refused, or None. A name that does not resolve is None here: the tap then fails
    to reach it and says so. The tap resolves names again itself, so this is a check before the
    run, not a fence around it."""
    def refusal(host: str) -> str | None:
        try:
            policy.resolve(host, 0)
        except DestinationRefused as refused:
            return str(refused)
        except OSError:
            return None
        return None

    return refusal


def get_connectors(app: Flask | None = None) -> Connectors:
    connectors: Connectors = (app or current_app).extensions[EXTENSION_KEY]
    return connectors
