"""The ``format`` keywords property schemas may use, each checked, and each explained in words.

jsonschema's :class:`FormatChecker` checks ``uri`` (with rfc3986-validator), ``hostname`` (with
fqdn), ``date-time`` (rfc3339-validator), ``date``, ``email`` and ``ipv4`` once those packages are
installed; without them it silently passes every value. :func:`format_checker` adds
``quartz-cron``: a Quartz cron expression as Stitch documents ``cron_expression`` (six or seven
fields, seconds first, with ``?``, ``L``, ``W`` and ``#``), checked by quartz-cron-checker, which
also refuses a day of month together with a day of week (Stitch's ``InvalidCronExpression``).
"""

from __future__ import annotations

from jsonschema import FormatChecker
from quartz_cron_checker import QuartzCronChecker
from quartz_cron_checker.exceptions import CronValidationError

QUARTZ_CRON = "quartz-cron"

# What a value of each format looks like, for error messages and the connect page's hints.
FORMAT_WORDS: dict[str, str] = {
    "date-time": "a date and time such as 2024-01-31T09:30:00Z",
    "date": "a date such as 2024-01-31",
    "email": "an email address such as ops@example.com",
    "uri": "a full URL such as https://example.com/path",
    "hostname": "a host name such as db.example.com",
    "ipv4": "an IPv4 address such as 192.0.2.10",
    QUARTZ_CRON: "a Quartz cron expression such as 0 0 12 ? * MON-FRI (seconds first; ? in the day of "
                 "month or the day of week)",
}


def _quartz_cron(value: object) -> bool:
    if not isinstance(value, str):
        return True  # the schema's "type" says what a non-string gets
    QuartzCronChecker.from_cron_string(value.strip()).validate()  # raises with the reason in words
    return True


def format_checker() -> FormatChecker:
    """The checker every property validator uses: jsonschema's formats plus ``quartz-cron``."""
    checker = FormatChecker()
    checker.checks(QUARTZ_CRON, raises=(CronValidationError,))(_quartz_cron)
    return checker


def checked_formats() -> frozenset[str]:
    """Formats whose values are really checked (those the test walks the shipped catalog against)."""
    return frozenset(format_checker().checkers)
