"""What text may reach a translation engine: no code point that an engine's own plumbing
could take for something other than text.

Measured on Apertium (lttoolbox 3.7), every BMP code point, all noncharacters and every 97th
astral one sent through the eng-spa pipeline: U+FFFF alone broke the stream (lt-proc reads
it as end of input and emits a stray null flush, which used to put the long-lived pipeline
one answer out of step). The other noncharacters, unpaired surrogates (not even encodable as
UTF-8; SentencePiece refuses them) and control characters have no business in a chat line or
caption either, so every engine gets text without them.
"""

from __future__ import annotations

import re

REPLACEMENT = "\ufffd"

# Noncharacters: U+FDD0..U+FDEF and the last two code points of every plane (U+xFFFE, U+xFFFF).
# Surrogates: a Python str holds one only when it was unpaired (JSON "\ud800", a bad decode).
_INVALID_CHARS = "\ud800-\udfff\ufdd0-\ufdef" + "".join(
    chr(p << 16 | 0xFFFE) + chr(p << 16 | 0xFFFF) for p in range(17)
)
# C0 and C1 controls and DEL, except tab and newline (and CR, turned into newlines first).
_CONTROL_CHARS = "\x00-\x08\x0b-\x1f\x7f-\x9f"
_INVALID = re.compile(f"[{_INVALID_CHARS}]")
_CONTROL = re.compile(f"[{_CONTROL_CHARS}]")
_ANY = re.compile(f"[{_INVALID_CHARS}{_CONTROL_CHARS}]")  # CR is a control too


def clean_text(text: str) -> str:
    """Noncharacters and unpaired surrogates become U+FFFD; CR/CRLF become newlines; other
    control characters (tab and newline kept) become spaces, so words do not run together."""
    if not _ANY.search(text):
        return text  # the common case, one scan
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub(" ", _INVALID.sub(REPLACEMENT, text))
