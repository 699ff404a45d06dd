"""
The tunnel protocol without I/O: what the proxy says to its peer, and when.

The records on the wire (L{wire}), how V1, V2 and V3 peers number things
(L{peer_format}), the tunnel's dispatch and its sessions (L{tunnel},
L{tunnel_session}, L{service_state}, L{service_ids}), the rules of each mode
(L{source_rules}, L{destination_rules}), and the order and pace in which
records leave (L{scheduler}, L{pacing}) or are taken in (L{inbound_flow}).

Nothing here opens a socket, starts a timer of its own or imports Twisted's
reactor or transports: the layers above hand it bytes, a clock and the
narrow interfaces of L{interfaces}, so every rule is tested without I/O.
It imports no other layer of the package.
"""
