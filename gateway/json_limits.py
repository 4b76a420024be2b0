"""JSON from clients with a bound on nesting: a deep document is refused before it is parsed.

The decoders recurse once per level, so a ~2 KB message of nested brackets raises
RecursionError inside them (or builds an object that later code recurses into). No request
of the protocol nests more than a few levels; MAX_JSON_DEPTH leaves ample room.

The check costs two `bytes.count` calls for any message with few brackets; only a message
with more opening brackets than the bound is scanned (strings removed, then a running sum,
all in C loops), and that scan is linear in the message, whose size is bounded by each
transport.
"""

from __future__ import annotations

import itertools
import re
from typing import Final

MAX_JSON_DEPTH: Final = 32

# A JSON string (escapes included); brackets inside strings do not nest anything. An
# unterminated string runs to the end: every match attempt succeeds, so the scan stays linear
# on hostile input (a pattern that can fail would be retried at each later quote).
_STRING = re.compile(rb'"(?:[^"\\]|\\.|\\\Z)*+(?:"|\Z)', re.DOTALL)
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")
_STEP: Final = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class TooDeep(ValueError):
    """The document nests deeper than allowed (answered as malformed, 1001)."""


def nesting_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in `data` (brackets in strings ignored)."""
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0)


def check_depth(data: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise TooDeep if `data` nests arrays/objects more than `max_depth` levels."""
    if isinstance(data, str):
        if data.count("[") + data.count("{") <= max_depth:
            return
        data = data.encode("utf-8", "surrogatepass")
    elif data.count(b"[") + data.count(b"{") <= max_depth:
        return
    depth = nesting_depth(data)
    if depth > max_depth:
        raise TooDeep(f"JSON nested {depth} levels deep; at most {max_depth} are accepted")
