"""
The errors that end a tunnel session, by what the proxy does next.

The reference sorts every failure into *recoverable* (throw the session away
and reconnect, if ``websocket.reconnect_on_data_error``) and *fatal* (exit 1).
The tunnel raises these; the WebSocket layer decides what follows.
"""

from __future__ import annotations


class TunnelError(Exception):
    """A tunnel session cannot go on."""


class RecoverableTunnelError(TunnelError):
    """The session is broken, a new one may work: reconnect (or exit 1 if told not to)."""


class FatalTunnelError(TunnelError):
    """The configuration cannot work with this tunnel, or the peer broke the protocol: exit 1."""
