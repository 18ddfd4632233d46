"""Connection checks, discovery and field selection.

``create_app`` wires this package in: :func:`~app.discovery.service.queue_check_when_ready` runs
after a source's properties change, and the worker runs
:func:`~app.discovery.jobs.check_and_discover` for ``check_and_discover`` jobs.
"""
