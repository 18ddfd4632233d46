"""What can go wrong when the service authenticates to a source's API.

Callers (the connection check, discovery) need one distinction above all: does the user have to
act (``CredentialsRejected``: the source is marked broken and says why), or will trying again
later help (``TokenUnavailable``)? ``AuthConfigurationError`` is neither: the report card or the
source's properties cannot produce a request at all. No message here carries a secret value.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


class ConnectorError(Exception):
    """Base of the errors of app.connectors."""


class AuthConfigurationError(ConnectorError):
    """The card's ``auth``/``api`` section cannot be used as written (or a property it names is
    missing): no request is sent."""


class TokenRequestError(ConnectorError):
    """One request to a token or login endpoint failed.

    ``permanent`` means retrying with the same credentials cannot help (the provider refused them:
    ``invalid_grant``, 400, 401…); otherwise it is transient (429, 5xx, timeouts, a body that is not
    a token). ``refresh_token`` carries a new refresh token found in an otherwise unusable answer,
    so it is not lost.
    """

    def __init__(
        self,
        message: str,
        *,
        error: str,
        permanent: bool,
        status: int | None = None,
        retry_after: float | None = None,
        refresh_token: str | None = None,
    ) -> None:
        super().__init__(message)
        self.error = error
        self.permanent = permanent
        self.status = status
        self.retry_after = retry_after
        self.refresh_token = refresh_token

    def __repr__(self) -> str:  # never shows the refresh token
        return (f"TokenRequestError({str(self)!r}, error={self.error!r}, "
                f"permanent={self.permanent}, status={self.status})")


class CredentialsRejected(ConnectorError):
    """The provider refused the source's credentials; the source is broken until the user acts.

    ``reason`` is the source's ``broken_reason`` (what its report card shows as ``setup_error``).
    """

    def __init__(self, message: str, reason: dict[str, Any]) -> None:
        super().__init__(message)
        self.reason = reason


class TokenUnavailable(ConnectorError):
    """No usable token now, for a reason that may pass (provider down, rate limited, timeouts).

    ``retry_at`` is the earliest time the shared back-off allows the next attempt.
    """

    def __init__(self, message: str, *, error: str, retry_at: datetime | None = None) -> None:
        super().__init__(message)
        self.error = error
        self.retry_at = retry_at


class ResponseTooLarge(ConnectorError):
    """The API's answer is longer than the call allows (execute, the proxy): it was not read on."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the answer is longer than {limit} bytes")
        self.limit = limit
