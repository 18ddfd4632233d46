"""Who calls whom: the collaborators ``create_app`` wires together, kept on the app.

Nothing registers itself when imported. ``create_app`` builds one :class:`Services` (which job
handlers and periodic jobs the workers run, what a source change does in other packages) and
:func:`install` puts it on the app; routes and the worker read it from there and pass each piece
as an argument to the code that uses it. A test builds an app with other wiring by installing
another ``Services`` (``dataclasses.replace`` of the default one).
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app

from .jobs.worker import JobTable
from .sources.writes import SourceHooks

SERVICES_KEY = "connect.services"


@dataclass(frozen=True)
class Services:
    source_hooks: SourceHooks
    jobs: JobTable


def install(app: Flask, services: Services) -> None:
    app.extensions[SERVICES_KEY] = services


def services(app: Flask | None = None) -> Services:
    found: Services = (app or current_app).extensions[SERVICES_KEY]
    return found
