"""Keep secrets out of log lines.

Every secret the process handles (values sealed or opened by the keyring, credentials received in a
request) is remembered here, in a bounded most-recently-used set; the JSON log formatter replaces
each remembered value, and anything that looks like an ``Authorization`` header value, with
``[REDACTED]`` in the finished line. Scanning the finished line catches a secret wherever it hides:
message, arguments, extra fields or a traceback.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict

MASK = "[REDACTED]"
MIN_LENGTH = 4  # shorter values would mask ordinary words; no real credential is this short
MAX_REMEMBERED = 5000
_AUTH_HEADER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{6,}")

_lock = threading.Lock()
# secret -> the same secret as it appears inside a JSON string (computed once, not per log line)
_secrets: OrderedDict[str, str] = OrderedDict()


def remember(value: object) -> None:
    if not isinstance(value, str) or len(value) < MIN_LENGTH:
        return
    with _lock:
        if value in _secrets:
            _secrets.move_to_end(value)
        else:
            _secrets[value] = json.dumps(value)[1:-1]
        while len(_secrets) > MAX_REMEMBERED:
            _secrets.popitem(last=False)


def redact(text: str) -> str:
    with _lock:
        known = list(_secrets.items())
    for secret, escaped in known:
        if secret in text:
            text = text.replace(secret, MASK)
        if escaped != secret and escaped in text:
            text = text.replace(escaped, MASK)
    return _AUTH_HEADER.sub(lambda m: f"{m.group(1)} {MASK}", text)
