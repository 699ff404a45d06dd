"""
A name resolver that records each lookup and answers when the test says.
"""

from __future__ import annotations

from typing import Mapping, Optional

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IHostnameResolver, IResolutionReceiver
from zope.interface import implementer


@implementer(IHostnameResolver)
class RecordingResolver:
    """
    Records each name lookup as (name, port).  With C{addresses} (name ->
    IP text) it answers at once from them (no address for another name);
    without, the lookup waits until the test calls L{complete}.
    """

    def __init__(self, addresses: Optional[Mapping[str, str]] = None) -> None:
        self.lookups: list[tuple[str, int]] = []
        self._addresses = addresses
        self._receivers: list[IResolutionReceiver] = []

    def resolveHostName(
        self,
        resolutionReceiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: object = None,
        transportSemantics: str = "TCP",
    ) -> IResolutionReceiver:
        self.lookups.append((hostName, portNumber))
        self._receivers.append(resolutionReceiver)
        if self._addresses is not None:
            address = self._addresses.get(hostName)
            kind = IPv6Address if address is not None and ":" in address else IPv4Address
            self.complete(*([kind("TCP", address, portNumber)] if address is not None else []))
        return resolutionReceiver

    def complete(self, *addresses: object) -> None:
        """The latest lookup resolves to C{addresses} (none: the name has no address)."""
        receiver = self._receivers[-1]
        receiver.resolutionBegan(None)  # type: ignore[arg-type]
        for address in addresses:
            receiver.addressResolved(address)  # type: ignore[arg-type]
        receiver.resolutionComplete()
