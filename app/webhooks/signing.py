"""Standard Webhooks signatures (https://www.standardwebhooks.com), made by the ``standardwebhooks``
package so the service signs exactly as receivers using that library verify.

A secret is ``whsec_`` + base64 of 32 random bytes. ``webhook-signature`` holds one ``v1,<base64
HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">`` per secret in use, space-separated: during
a rotation's overlap both the new and the old secret sign, so a receiver holding either verifies.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from datetime import UTC, datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(os.urandom(SECRET_BYTES)).decode()


def signed_headers(secrets: Sequence[str], message_id: str, sent_at: datetime, body: str) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt. ``sent_at`` is the wall-clock time of the
    attempt: receivers compare it with their own clock (the library allows five minutes)."""
    if not secrets:
        raise ValueError("a webhook needs at least one signing secret")
    timestamp = datetime.fromtimestamp(int(sent_at.timestamp()), UTC)
    signatures = " ".join(Webhook(secret).sign(message_id, timestamp, body) for secret in secrets)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signatures,
    }
