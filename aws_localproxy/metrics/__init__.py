"""
What a proxy counts, and the page that serves it.

L{snapshot} freezes a proxy's counters into C{TunnelMetrics} and
C{ServiceMetrics}; L{prometheus} serves them on C{--metrics-port}. It reads
the other layers' objects through their public accessors only.
"""
