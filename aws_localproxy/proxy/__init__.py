"""
One local proxy, wired: L{service.LocalProxyService} builds the layers and joins them.

It builds the tunnel, the link to the service and the local side from a
C{ProxyConfig}, and calls the embedding hooks with L{tunnel_events}' records;
L{stdio_exit} says how a C{--stdio} proxy ends once its connection is over.
It holds no protocol logic and no I/O of its own.
"""
