# -*- test-case-name: tests.adapters.test_paho_private -*-
"""
The one private part of paho-mqtt the device agent uses, in one place.

paho's C{Client.reconnect} gets its socket from C{Client._create_socket},
which resolves the broker's name, connects and does the TLS handshake, all
blocking.  The agent makes the connection with Twisted instead (nothing
blocks the reactor) and hands paho a socket-like object over it:
L{HandedSocketClient} overrides C{_create_socket} to return that object
(L{aws_localproxy.agent.mqttsession}).  paho-mqtt 2.0 to 2.2 have the seam;
setup.py keeps paho-mqtt below 3, and tests/adapters/test_paho_private.py
is the canary.

Gone (L{HANDS_SOCKET} false: C{reconnect} no longer calls
C{_create_socket}): there is no public way to hand paho a connection, and
letting paho connect by itself would block the reactor, so
L{HandedSocketClient} refuses to be built, with an error naming the seam;
the agent logs it for each attempt at a session.
"""

from __future__ import annotations

from typing import Any, Optional

import paho.mqtt.client as paho

from aws_localproxy.adapters.seams import code_uses

__all__ = ["HANDS_SOCKET", "HandedSocketClient", "PahoSeamMissing"]

#: Whether paho's C{Client.reconnect} still gets its socket from
#: C{Client._create_socket} (what L{HandedSocketClient} overrides).
HANDS_SOCKET: bool = callable(getattr(paho.Client, "_create_socket", None)) and code_uses(
    paho.Client, "reconnect", "_create_socket"
)


class PahoSeamMissing(RuntimeError):
    """This paho-mqtt cannot be handed a connection (L{HANDS_SOCKET} is false)."""


class HandedSocketClient(paho.Client):
    """paho's client, taking the socket it is handed instead of connecting itself."""

    #: What C{_create_socket} returns: the agent's socket-like object over
    #: the Twisted connection.
    transport_socket: Optional[Any] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Built first: paho's __del__ expects a whole client.
        super().__init__(*args, **kwargs)
        if not HANDS_SOCKET:
            raise PahoSeamMissing(
                f"paho-mqtt {getattr(paho, '__version__', '?')} no longer gets its socket from "
                "Client._create_socket, the one way the agent can hand it a connection without "
                "blocking: install paho-mqtt>=2.0,<3"
            )

    def _create_socket(self) -> Any:
        if self.transport_socket is None:
            raise ConnectionError("no connection to hand to paho")
        return self.transport_socket
