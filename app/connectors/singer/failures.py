"""A failed tap run as a :class:`ConnectorFailure`: who can fix it, a short message for the user,
and the redacted stderr tail for the operator.

Taps report failures in words, not codes: a Python traceback or a log line on stderr, and exit 1.
The tail of stderr is read from its last line upwards, and the first line that names a known kind
of failure decides (a tap that logged "429, retrying" a few times and then died of a 401 failed on
the 401):

====================  =======================================  ==========  ===========================
kind                   recognised by                            fixed_by    error_type
====================  =======================================  ==========  ===========================
credentials            401/403, unauthorized, invalid_grant,     user        credentials_rejected
                       bad credentials, password authentication
                       failed, access denied for user …
rate limit             429, rate limit, too many requests        time        source_rate_limited
server error           500–504 with error/status words,          time        source_unavailable
                       service unavailable, bad gateway
network                connection refused/reset, timed out,      time        source_unreachable
                       name resolution, no route to host …
memory                 MemoryError, cannot allocate memory       operator    tap_out_of_memory
anything else          (a crash: a traceback, exit ≠ 0)          time        tap_failed
====================  =======================================  ==========  ===========================

Before those: a tap that refused to start because its config lacks keys (singer-python's
``check_config``: "Config is missing required keys: [...]") failed for good, not for a while. When
every missing key is a property of the card, the user can give it (``user``:
``missing_properties``, naming them); otherwise the card's singer section does not give the tap
what it needs (``operator``: ``tap_config_incomplete``, naming the keys).

And from the runner: killed at the timeout → time (``tap_timeout``: a slow API may answer later);
stdout over the cap → operator (``tap_output_too_large``: the same run would flood again); a
catalog that is not a catalog → operator (``tap_invalid_output``: a tap bug or a wrong
executable). An unrecognised crash counts as time's: the job's attempts are bounded, so a tap
that always crashes fails after its retries, while one that met a passing fault recovers.
"""

from __future__ import annotations

import re

from ..base import ConnectorFailure, FixedBy
from .runner import TapRun

OPERATOR_DETAIL_CHARACTERS = 4000

_CREDENTIALS = re.compile(
    r"\b40[13]\b|unauthori[sz]ed|invalid[_ ]grant|invalid[_ ]client|bad credentials|invalid credentials"
    r"|authentication fail|password authentication|access denied for user|invalid (api[_ ]?key|token)"
    r"|forbidden|not authori[sz]ed|permission denied for|login failed", re.IGNORECASE)
_RATE_LIMITED = re.compile(r"\b429\b|rate[ -]?limit|too many requests|quota exceeded", re.IGNORECASE)
_SERVER_ERROR = re.compile(
    r"\b50[0-4]\b.*(error|server|unavailable|gateway)|(error|server|status)\D{0,20}\b50[0-4]\b"
    r"|service unavailable|bad gateway|gateway time-?out|internal server error", re.IGNORECASE)
_NETWORK = re.compile(
    r"connection (refused|reset|aborted)|could not connect|can't connect|timed out|timeout"
    r"|name or service not known|temporary failure in name resolution|nodename nor servname"
    r"|no route to host|network is unreachable|max retries exceeded|connectionerror"
    r"|could not translate host name|unknown mysql server host", re.IGNORECASE)
_MEMORY = re.compile(r"memoryerror|cannot allocate memory|out of memory", re.IGNORECASE)
_RETRY_AFTER = re.compile(r"retry[- ]after\D{0,5}(\d{1,6})", re.IGNORECASE)

# (pattern, error_type, fixed_by, message for the user), in the order a line is tried.
_KINDS: tuple[tuple[re.Pattern[str], str, FixedBy, str], ...] = (
    (_MEMORY, "tap_out_of_memory", "operator",
     "The connector ran out of memory; the operator can raise its memory limit."),
    (_CREDENTIALS, "credentials_rejected", "user",
     "The source refused the credentials. Check them and save them again."),
    (_RATE_LIMITED, "source_rate_limited", "time",
     "The source is limiting requests for now; the check will be tried again later."),
    (_SERVER_ERROR, "source_unavailable", "time",
     "The source answered with a server error; the check will be tried again later."),
    (_NETWORK, "source_unreachable", "time",
     "The source could not be reached; the check will be tried again later."),
)


_MISSING_KEYS = re.compile(r"config is missing required keys:\s*\[([^\]]*)\]", re.IGNORECASE)


def missing_config_keys(stderr_tail: str) -> list[str]:
    """The config keys a tap said it is missing (singer-python's check_config), or []."""
    found = _MISSING_KEYS.search(stderr_tail)
    return re.findall(r"['\"]([^'\"]+)['\"]", found.group(1)) if found else []


def incomplete_config(run: TapRun, what: str, missing: list[str],
                      properties: dict[str, str | None]) -> ConnectorFailure:
    """``properties``: each missing key → the card's property that gives it, or None."""
    if all(properties.get(key) for key in missing):
        names = ", ".join(repr(properties[key]) for key in missing)
        return _failure(run, what, "missing_properties", "user",
                        f"This source type's connector needs {names}: set and save them.", "config incomplete")
    keys = ", ".join(repr(key) for key in missing)
    return _failure(run, what, "tap_config_incomplete", "operator",
                    f"The connector needs config keys the source type does not give it ({keys}); an operator "
                    "must add them to the card's singer section.", "config incomplete")


def run_failure(run: TapRun, what: str) -> ConnectorFailure:
    """The failure of a run that did not succeed; ``what`` names it for the operator ("tap-x --discover")."""
    if run.timed_out:
        return _failure(run, what, "tap_timeout", "time",
                        "The connector did not finish in time; the check will be tried again later.",
                        f"killed after {run.seconds:.0f} s")
    if run.output_capped:
        return _failure(run, what, "tap_output_too_large", "operator",
                        "The connector produced more output than this deployment accepts.",
                        f"stdout cut off at {len(run.stdout)} bytes and the tap killed")
    line_kind = _kind_of(run.stderr_tail)
    if line_kind is not None:
        error_type, fixed_by, message, line = line_kind
        retry_after = _retry_after(line) if fixed_by == "time" else None
        return _failure(run, what, error_type, fixed_by, message, f"exit {run.returncode}", retry_after)
    signalled = run.returncode is not None and run.returncode < 0
    return _failure(run, what, "tap_failed", "time",
                    "The connector failed; the check will be tried again later.",
                    f"killed by signal {-run.returncode}" if signalled and run.returncode else f"exit {run.returncode}")


def invalid_output(run: TapRun, what: str, reason: str) -> ConnectorFailure:
    return _failure(run, what, "tap_invalid_output", "operator",
                    "The connector's answer could not be read; the operator has the details.", reason)


def _kind_of(stderr_tail: str) -> tuple[str, FixedBy, str, str] | None:
    for line in reversed(stderr_tail.splitlines()):
        for pattern, error_type, fixed_by, message in _KINDS:
            if pattern.search(line):
                return error_type, fixed_by, message, line
    return None


def _retry_after(line: str) -> float | None:
    found = _RETRY_AFTER.search(line)
    return float(found.group(1)) if found else None


def _failure(run: TapRun, what: str, error_type: str, fixed_by: FixedBy, message: str, how: str,
             retry_after: float | None = None) -> ConnectorFailure:
    detail = f"{what}: {how}; stderr (last lines, redacted):\n{run.stderr_tail}"
    return ConnectorFailure(error_type, message, fixed_by=fixed_by, retry_after=retry_after,
                            operator_detail=detail[-OPERATOR_DETAIL_CHARACTERS:])

