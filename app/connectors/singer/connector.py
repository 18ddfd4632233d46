"""``SingerConnector``: a source type checked and discovered by running its Singer tap.

* :meth:`~SingerConnector.availability`: configurable when the card has a usable ``singer``
  section and its tap is installed here (``flask connect taps install TYPE``).
* :meth:`~SingerConnector.check`: ``tap --config F --test`` for taps that declare ``test`` (Singer
  SDK taps, whose ``--discover`` may not reach the source at all), else ``tap --config F
  --discover``: exit 0 with a valid catalog means the configuration works.
* :meth:`~SingerConnector.discover`: the catalog of the check's own ``--discover`` run when there
  was one (one process per job, not two), else a ``--discover`` run now.

**Rotated credentials.** Taps refresh OAuth tokens themselves and some write the new refresh
token back into their config file. After every run — failed ones too — the keys the tap added or
changed are handed, mapped back to the card's property names, to ``on_config_change`` as a
:class:`ConfigChange`, before the connector returns or raises. The callee must store them with the
token store's guarantees (never lost, never replaced by an older value) and record an audit event;
it is called outside any database transaction. Without a callee, the change is logged (key names
only) and lost, so a deployment with rotating taps must wire one.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ... import redaction
from ...catalog.singer_section import SingerSpec, SpecError, parse_spec
from ..base import Availability, ConnectorFailure, DiscoveredStream, SourceTarget
from .catalog import CatalogInvalid, catalog_document, parse_catalog
from .config import ConfigConversionError, tap_config
from .environments import InstalledTap, TapEnvironments
from .failures import incomplete_config, invalid_output, missing_config_keys, run_failure
from .runner import RunLimits, TapMissing, TapRun, run_tap

if TYPE_CHECKING:
    from ...catalog.cards import ReportCard

log = logging.getLogger("connect.singer")
REMEMBERED_CATALOGS = 64
DEFAULT_USER_AGENT = "connect (Singer tap runner)"


@dataclass(frozen=True)
class ConfigChange:
    """What a tap changed in its config file during one run of one source's configuration.

    ``properties``: changed values by the card's property name (a rotated ``refresh_token``);
    ``given``: the values the run was given for those properties (what a stored value must still
    be for the change to replace it); ``credentials``: which of them are credentials of the card;
    ``other_keys``: changed config keys that are no property of the card (a cached access token).
    All hold secrets: never log them.
    """

    source_id: int
    account_id: int
    config_generation: int
    properties: Mapping[str, Any] = field(repr=False)
    other_keys: Mapping[str, Any] = field(repr=False)
    given: Mapping[str, Any] = field(default_factory=dict, repr=False)
    credentials: frozenset[str] = frozenset()


ConfigChangeSink = Callable[[ConfigChange], None]
# A host name or address a tap is about to connect to -> why the deployment refuses it, or None.
# The deployment's network rules (no cloud metadata, no private ranges unless allowed) are wired
# here; the tap resolves names itself, so this is a check before the run, not a fence around it.
AddressCheck = Callable[[str], str | None]


@lru_cache(maxsize=2048)
def _spec_of(card: ReportCard) -> SingerSpec | None:
    return None if card.singer is None else parse_spec(card.singer)


def spec_for(card: ReportCard) -> SingerSpec:
    """The card's parsed ``singer`` section (a card that has none, or a bad one, is the operator's)."""
    try:
        spec = _spec_of(card)
    except SpecError as error:
        raise ConnectorFailure("configuration_error", f"source type {card.type} has a singer section this "
                               "service cannot use", fixed_by="operator", operator_detail=str(error)) from None
    if spec is None:
        raise ConnectorFailure("configuration_error", f"source type {card.type} has no singer section",
                               fixed_by="operator")
    return spec


NOT_INSTALLED = "connector_not_installed"


def not_installed(card: ReportCard) -> ConnectorFailure:
    return ConnectorFailure(
        NOT_INSTALLED,
        f"The connector for {card.display_name} is not installed on this deployment; an operator can "
        f"install it with `flask connect taps install {card.type}`.", fixed_by="operator")


class SingerConnector:
    kind = "singer"

    def __init__(self, environments: TapEnvironments, limits: RunLimits, *,
                 on_config_change: ConfigChangeSink | None = None, check_address: AddressCheck | None = None,
                 user_agent: str = DEFAULT_USER_AGENT) -> None:
        self.environments = environments
        self.limits = limits
        self.user_agent = user_agent
        self.on_config_change = on_config_change
        self.check_address = check_address
        self._catalogs: OrderedDict[tuple[int, int], list[DiscoveredStream]] = OrderedDict()
        # What a run of a configuration rotated, for the next run of the same job (a ``--test``
        # that rotated, then ``--discover``), which must not send the spent value again.
        self._rotated: OrderedDict[tuple[int, int], dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Mapping[str, Any], instance_path: str, *,
                    on_config_change: ConfigChangeSink | None = None,
                    check_address: AddressCheck | None = None) -> SingerConnector:
        """Built from the app's settings (``CONNECT_TAPS_DIR``, ``CONNECT_TAP_*``)."""
        root = config.get("TAPS_DIR") or Path(instance_path) / "taps"
        memory_mb = int(config.get("TAP_MAX_MEMORY_MB", 2048))
        limits = RunLimits(timeout=float(config.get("TAP_TIMEOUT", 300.0)),
                           max_output_bytes=int(config.get("TAP_MAX_OUTPUT_BYTES", 64 * 1024 * 1024)),
                           max_memory_bytes=memory_mb * 1024 * 1024 if memory_mb > 0 else None)
        return cls(TapEnvironments(root), limits, on_config_change=on_config_change, check_address=check_address,
                   user_agent=str(config.get("TAP_USER_AGENT") or DEFAULT_USER_AGENT))

    def availability(self, card: ReportCard) -> Availability:
        try:
            spec = spec_for(card)
        except ConnectorFailure as failure:
            return Availability(False, failure.message)
        if not spec.installable:
            return Availability(False, f"its Singer tap ({spec.requirement}) cannot be installed on this "
                                       f"deployment: {spec.not_installable_reason}")
        if self.environments.installed(card.type) is None:
            return Availability(False, f"its Singer tap is not installed: an operator can install it with "
                                       f"`flask connect taps install {card.type}`")
        return Availability(True)

    def check(self, target: SourceTarget) -> None:
        with self._lock:  # a job starts from the stored values: a run elsewhere may have rotated since
            self._rotated.pop((target.source_id, target.config_generation), None)
        spec, tap = self._ready(target.card)
        if spec.tests_connection:
            self._run(target, spec, tap, ["--test"])
            return
        streams = self._discovered(target, spec, tap)
        with self._lock:
            self._catalogs[(target.source_id, target.config_generation)] = streams
            while len(self._catalogs) > REMEMBERED_CATALOGS:
                self._catalogs.popitem(last=False)

    def discover(self, target: SourceTarget) -> list[DiscoveredStream]:
        with self._lock:
            remembered = self._catalogs.pop((target.source_id, target.config_generation), None)
        try:
            if remembered is not None:
                return remembered
            spec, tap = self._ready(target.card)
            return self._discovered(target, spec, tap)
        finally:  # the job's last run: the next job reads what was stored
            with self._lock:
                self._rotated.pop((target.source_id, target.config_generation), None)

    def _ready(self, card: ReportCard) -> tuple[SingerSpec, InstalledTap]:
        spec = spec_for(card)
        tap = self.environments.installed(card.type)
        if tap is None:
            raise not_installed(card)
        return spec, tap

    def _discovered(self, target: SourceTarget, spec: SingerSpec, tap: InstalledTap) -> list[DiscoveredStream]:
        run = self._run(target, spec, tap, ["--discover"])
        try:
            return parse_catalog(catalog_document(run.stdout))
        except CatalogInvalid as error:
            raise invalid_output(run, f"{spec.executable} --discover", str(error)) from None

    def _run(self, target: SourceTarget, spec: SingerSpec, tap: InstalledTap, arguments: list[str]) -> TapRun:
        """One run of the tap for the target; a failed run raises, after its config changes are handed on."""
        self._check_addresses(target, spec)
        key = (target.source_id, target.config_generation)
        with self._lock:
            properties = {**target.properties, **self._rotated.get(key, {})}
        try:
            config = self.tap_config(spec, properties)
        except ConfigConversionError as error:
            raise ConnectorFailure("invalid_configuration", str(error), fixed_by="user") from None
        try:
            run = run_tap(tap.executable, arguments, config, self._limits_for(spec),
                          secrets=_secret_values(target))
        except TapMissing:
            raise not_installed(target.card) from None
        if run.config_changes:
            self._hand_on(target, spec, properties, run.config_changes)
        if not run.succeeded:
            what = f"{spec.executable} {' '.join(arguments)}"
            missing = missing_config_keys(run.stderr_tail) if run.returncode else []
            if missing:
                names = {key: spec.config.property_for(key) for key in missing}
                raise incomplete_config(run, what, missing, {key: name if name in target.card.properties else None
                                                             for key, name in names.items()})
            raise run_failure(run, what)
        return run

    def tap_config(self, spec: SingerSpec, properties: Mapping[str, Any]) -> dict[str, Any]:
        """The config a run of the tap is given (and ``export-source`` writes) for these properties."""
        return tap_config(spec.config, properties, defaults={"user_agent": self.user_agent})

    def _check_addresses(self, target: SourceTarget, spec: SingerSpec) -> None:
        """Refuse to run a tap pointed at an address the deployment's network rules forbid."""
        if self.check_address is None:
            return
        for name in (*spec.network.hosts, *spec.network.urls):
            value = target.properties.get(name)
            if value is None or value == "":
                continue
            host = host_of(str(value))
            if host is None:
                raise ConnectorFailure("invalid_configuration", f"property {name!r} names no host", fixed_by="user")
            refusal = self.check_address(host)
            if refusal is not None:
                raise ConnectorFailure("address_not_allowed", f"property {name!r} names an address this "
                                       f"deployment does not connect to: {refusal}", fixed_by="user")

    def _limits_for(self, spec: SingerSpec) -> RunLimits:
        own = spec.limits
        return RunLimits(
            timeout=own.timeout_seconds or self.limits.timeout,
            max_output_bytes=own.max_output_bytes or self.limits.max_output_bytes,
            max_memory_bytes=own.max_memory_bytes or self.limits.max_memory_bytes,
            stderr_tail_bytes=self.limits.stderr_tail_bytes)

    def _hand_on(self, target: SourceTarget, spec: SingerSpec, given: Mapping[str, Any],
                 changes: Mapping[str, Any]) -> None:
        for value in changes.values():
            redaction.remember(value)
        properties: dict[str, Any] = {}
        others: dict[str, Any] = {}
        for key, value in changes.items():
            name = spec.config.property_for(key)
            if name in target.card.properties:
                properties[name] = value
            else:
                others[key] = value
        card_properties = target.card.properties
        change = ConfigChange(target.source_id, target.account_id, target.config_generation, properties, others,
                              given={name: given.get(name) for name in properties},
                              credentials=frozenset(n for n in properties if card_properties[n].is_credential))
        with self._lock:
            run_of = (target.source_id, target.config_generation)
            self._rotated[run_of] = {**self._rotated.get(run_of, {}), **properties}
            while len(self._rotated) > REMEMBERED_CATALOGS:
                self._rotated.popitem(last=False)
        if self.on_config_change is None:
            log.warning("tap changed its config but nothing stores the change", extra={
                "source_id": target.source_id, "keys": sorted(changes)})
            return
        self.on_config_change(change)


def host_of(value: str) -> str | None:
    """The host a host or URL property names (``db.example:5432``, ``https://x.example/api``)."""
    text = value.strip()
    try:
        host = urlsplit(text if "://" in text else f"//{text}").hostname
    except ValueError:
        return None
    return host or None


def _secret_values(target: SourceTarget) -> list[str]:
    """The values a tap's stderr must never show: the source's credentials."""
    return [str(value) for name, value in target.properties.items()
            if value is not None and (spec := target.card.properties.get(name)) is not None and spec.is_credential]
