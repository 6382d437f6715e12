"""Characters XML 1.0 cannot carry, and the longest URL we keep. Pure functions."""

from __future__ import annotations

import re

# C0 controls but tab/LF/CR, surrogates, U+FFFE/F: as the inside of a regex class.
ILLEGAL_CHARS = "\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff"
_XML_ILLEGAL = re.compile(f"[{ILLEGAL_CHARS}]")
MAX_URL = 4096


def strip_control(text: str) -> str:
    """The text without the characters XML 1.0 forbids."""
    return _XML_ILLEGAL.sub("", text)
