"""Names and numbers of the protocol and the reference that several modules share."""

from __future__ import annotations

import enum


class Mode(enum.Enum):
    """Which end of the tunnel this local proxy is."""

    SOURCE = "source"
    DESTINATION = "destination"

    @property
    def query_value(self) -> str:
        """The value of ``local-proxy-mode`` in the WebSocket URL."""
        return self.value


class PeerVersion(enum.IntEnum):
    """
    The message format spoken towards the peer (``-y/--destination-client-type``).

    V3 is the default; V2 drops connection IDs (one connection per service at a
    time); V1 also drops service IDs (a single service).  It changes messages
    only: the ``Sec-WebSocket-Protocol`` header comes from the settings.
    """

    V1 = 1
    V2 = 2
    V3 = 3


#: Subprotocol names, newest first, as offered in ``Sec-WebSocket-Protocol``.
SUBPROTOCOL_V3 = "aws.iot.securetunneling-3.0"
SUBPROTOCOL_V2 = "aws.iot.securetunneling-2.0"
SUBPROTOCOL_V1 = "aws.iot.securetunneling-1.0"
SUBPROTOCOLS = (SUBPROTOCOL_V3, SUBPROTOCOL_V2, SUBPROTOCOL_V1)

#: Largest WebSocket frame payload the service accepts or sends (2 x (64 KiB + 2)).
MAX_WEBSOCKET_FRAME_SIZE = 131076

#: The ``access-token`` / ``client-token`` request headers.
ACCESS_TOKEN_HEADER = "access-token"
CLIENT_TOKEN_HEADER = "client-token"
#: Browsers cannot set headers; the service also takes the token as this cookie.
ACCESS_TOKEN_COOKIE = "awsiot-tunnel-token"
