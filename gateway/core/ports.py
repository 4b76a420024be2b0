"""A listening port that is taken: the one error every listener of the gateway raises for it."""

from __future__ import annotations

import errno


class PortInUse(OSError):
    """The listening port is taken (by another exchange, or anything else)."""

    def __str__(self) -> str:
        return str(self.strerror)


def port_in_use(what: str, host: str, port: int, reuse_port: bool) -> PortInUse:
    hint = "" if reuse_port else " (to share it with other gateways: --reuse-port)"
    return PortInUse(errno.EADDRINUSE, f"{what} {port} on {host} is in use{hint}")
