"""The Singer tap connector: sources checked and discovered by running the type's Singer tap.

``spec`` parses a card's ``singer`` section; ``environments`` installs taps (one virtual
environment per type, by the operator only); ``runner`` runs a tap in a fenced-in process;
``config`` turns properties into the tap's config; ``catalog`` reads the tap's catalog and writes
selections back into it; ``connector`` is the :class:`~app.connectors.base.Connector`.

Taps are never imported: many are AGPL-3.0, and each runs as a separate process from its own
environment, so the service and its licence stay apart from them.
"""
