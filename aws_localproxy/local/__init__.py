"""
The local side of a proxy: the sockets of the applications that use the tunnel.

A source listens (L{source}), a destination connects (L{destination}),
C{--stdio} uses standard input and output (L{stdio}), an in-process
factory needs no socket at all (L{inprocess}); each local connection is one
L{connection.LocalStreamProtocol}.  L{build} picks and builds the side a
configuration asks for, with the tunnel's entry points.

Imports the protocol core, config and adapters; never the upstream link.
"""
