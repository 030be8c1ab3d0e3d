"""Terminal escape sequences (colours, cursor moves, titles): recognized and removed.

Output and errors travel as plain text; the worker strips what programs print, and the
server strips again whatever reaches it.
"""

from __future__ import annotations

import re

ANSI_RE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI ... final byte
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC ... BEL / ST
    r"|\x1b[PX^_][^\x1b]*\x1b\\"  # DCS / SOS / PM / APC ... ST
    r"|\x1b[@-Z\\-_]"  # two-byte escapes
)
# An escape sequence cut off at the end of a chunk (kept back until more text arrives).
ANSI_TAIL_RE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*|[PX^_][^\x1b]*)?\Z")


def strip_ansi(text: str) -> str:
    """``text`` without escape sequences."""
    return ANSI_RE.sub("", text) if "\x1b" in text else text
