"""
The console scripts and the twistd plugin: argv in, exit status out.

C{localproxy} (L{localproxy}, with its C{usage.Options} in L{options}),
what it shares with C{localproxy-agent} (L{console}), the reference's log
line format (L{log_setup}) and C{twistd localproxy} (L{tap}).

The top layer: it may import any other; nothing imports it but the agent's
command, which shares its console helpers.
"""
