"""Connection checks, discovery and field selection."""

from flask import Flask

from ..sources import service as sources


def init_app(app: Flask) -> None:
    """Queue check + discovery when a source's credential steps complete or change, and register
    the job that runs them."""
    from . import jobs  # noqa: F401  (registers the check_and_discover handler)
    from .service import queue_check_when_ready

    if queue_check_when_ready not in sources.after_properties_changed:
        sources.after_properties_changed.append(queue_check_when_ready)
