"""When a failed webhook delivery is tried again: exponential back-off with jitter, within a window.

The n-th failed attempt waits ``10 s × 4^(n-1)``, at most 6 h, times a random factor in [0.75, 1.25]
(so endpoints that failed together are not all retried in the same second): about 10 s, 40 s,
2.7 min, 11 min, 43 min, 2.8 h, then every 6 h. A ``Retry-After`` the endpoint sent is a floor.
No attempt is scheduled after the window (24 h from the event, or from a redelivery) ends: the
last one is made at its end, and a failure then marks the delivery failed. Pure functions.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta

FIRST_DELAY = timedelta(seconds=10)
FACTOR = 4
LONGEST_DELAY = timedelta(hours=6)
JITTER = 0.25


def retry_delay(failed_attempts: int, rng: Callable[[], float] = random.random) -> timedelta:
    """The wait after the ``failed_attempts``-th failure in a row (1 for the first)."""
    exponent = max(failed_attempts - 1, 0)
    # Capped before the power can grow large: 4^12 × 10 s is already far past 6 h.
    base: timedelta = min(FIRST_DELAY * FACTOR ** min(exponent, 12), LONGEST_DELAY)
    return base * (1 - JITTER + 2 * JITTER * rng())


def next_attempt_at(now: datetime, failed_attempts: int, give_up_at: datetime,
                    retry_after: float | None = None,
                    rng: Callable[[], float] = random.random) -> datetime | None:
    """When to try again after a failure at ``now``, or None when the window is over."""
    if now >= give_up_at:
        return None
    delay = retry_delay(failed_attempts, rng)
    if retry_after is not None:
        delay = max(delay, timedelta(seconds=retry_after))
    return min(now + delay, give_up_at)
