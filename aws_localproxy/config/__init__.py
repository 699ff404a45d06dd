"""
What a proxy is built from: validated configuration, and the grammars of its options.

L{proxy_config.ProxyConfig} is what the command line, twistd and embedding
code all build (L{build}); L{settings} holds the C{tunneling.proxy.*}
keys; the rest are the grammars and rules behind them (local endpoints,
port mappings, web proxy URLs, regions, client tokens, config files).

Imports the protocol core (its constants and limits) and adapters only.
"""
