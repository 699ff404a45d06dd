"""
The console scripts and the twistd plugin: argv in, exit status out.

C{localproxy} (L{localproxy}, with its C{usage.Options} in L{options}),
what it shares with C{localproxy-agent} (L{console}), the reference's log
line format (L{log_setup}) and C{twistd localproxy} (L{tap}).

The top layer: it may import any other; nothing imports it but the agent's
command, which shares its console helpers.

Importing this package defers the standard-library modules Twisted imports
and no proxy uses (L{aws_localproxy.adapters.startup}): a console script
imports it before anything imports Twisted, and an ssh C{ProxyCommand}
starts one for every connection.  Where Twisted came first (twistd, an
application, the tests) it changes nothing.
"""

from aws_localproxy.adapters.startup import defer_unused_stdlib

defer_unused_stdlib()
