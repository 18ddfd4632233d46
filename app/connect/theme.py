"""The session's branding as a small stylesheet (served from the page's own origin, so the
Content-Security-Policy can stay ``style-src 'self'`` with no inline styles)."""

from __future__ import annotations

import re

DEFAULT_PRIMARY = "#1f5fbf"
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


def _relative_luminance(color: str) -> float:
    channels = []
    for start in (1, 3, 5):
        value = int(color[start:start + 2], 16) / 255
        channels.append(value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4)
    red, green, blue = channels
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def text_color_on(color: str) -> str:
    """Black or white, whichever contrasts more with ``color`` (WCAG contrast ratio)."""
    luminance = _relative_luminance(color)
    on_white = 1.05 / (luminance + 0.05)
    on_black = (luminance + 0.05) / 0.05
    return "#ffffff" if on_white >= on_black else "#000000"


def theme_css(primary_color: str | None) -> str:
    # The colour was validated when the session was made; checked again as it lands in CSS.
    color = primary_color if primary_color and _HEX.match(primary_color) else DEFAULT_PRIMARY
    return f":root {{ --primary: {color.lower()}; --on-primary: {text_color_on(color)}; }}\n"
