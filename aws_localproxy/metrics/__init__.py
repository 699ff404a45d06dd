"""
What a proxy counts, and the page that serves it.

L{snapshot} freezes a proxy's counters into C{TunnelMetrics} and
C{ServiceMetrics}; L{prometheus} serves them on C{--metrics-port} (a child
service of the proxy). It reads the other layers' objects through their
public accessors only (tests/test_layers.py checks).
"""
