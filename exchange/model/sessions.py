"""Cancel-on-disconnect: what a trading session asks to be canceled when it goes away.

One set of values for every layer: the WebSocket logon parameter, FIX tag 8013 (mapped in
gateway/fix), the link's SessionOpened notice and the matcher's cover for a lost gateway.
A `StrEnum`, so its members are the wire strings themselves.
"""

from __future__ import annotations

import enum


class CancelOnDisconnect(enum.StrEnum):
    NONE = "none"  # orders stay
    SESSION = "session"  # only the orders this session placed
    ACCOUNT = "account"  # every open order of the session's account
