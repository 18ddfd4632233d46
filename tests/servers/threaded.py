"""Run a WSGI app on an ephemeral 127.0.0.1 port in a background thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

# How often serve_forever wakes to notice a shutdown; small so teardown stays fast.
_POLL_INTERVAL = 0.05


class QuietRequestHandler(WSGIRequestHandler):
    """Skips the access log: request lines carry API keys and codes in query strings."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


class ServerThread(threading.Thread):
    """A werkzeug server for one app, bound at construction so the port is known at once."""

    def __init__(self, app: Any) -> None:
        super().__init__(name="test-server", daemon=True)
        self.server: BaseWSGIServer = make_server(
            "127.0.0.1", 0, app, threaded=True, request_handler=QuietRequestHandler
        )

    @property
    def port(self) -> int:
        return self.server.server_port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def run(self) -> None:
        self.server.serve_forever(poll_interval=_POLL_INTERVAL)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting requests, close the listening socket and wait for the loop to end."""
        started = self.ident is not None
        if started:
            self.server.shutdown()
        self.server.server_close()
        if started:
            self.join(timeout)


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve ``app`` for the duration of the block and yield its base URL."""
    thread = ServerThread(app)
    thread.start()
    try:
        yield thread.base_url
    finally:
        thread.stop()
