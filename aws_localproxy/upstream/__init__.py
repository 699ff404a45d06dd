"""
The link to the tunneling service: one WebSocket over TLS, through a web proxy if asked.

L{connector} connects, retries, reconnects and decides the exit code;
L{link} builds one connect attempt's endpoint and factory from a
C{ProxyConfig}; L{websocket} is the Autobahn client protocol that carries
the records; L{tls_options} and L{tls_layer} are its TLS; L{masking} masks
client frames; L{webproxy} reaches the service through HTTP CONNECT or SOCKS5.

Imports the protocol core, config and adapters; never the local sides.
"""
