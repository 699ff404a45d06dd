"""
Mutants of the local sides, the client token file and the local tunnel
service's bandwidth gate: the modules of the local-side mutation round
(issue 21), each killed in seconds by the named unit-test modules.
"""

from tests.support.mutation import Mutant

MUTANTS = (
    Mutant(
        name="source-rebinds-on-repeated-service-ids",
        path="aws_localproxy/local/source.py",
        find="if service_id in self._ports or service_id in self._pending:",
        replace="if service_id in self._ports:",
        tests=("tests.local.test_source_listen",),
        why="a reconnect's SERVICE_IDS during a bind retry binds the port a second time",
    ),
    Mutant(
        name="source-fatal-when-stop-cancels-a-retry",
        path="aws_localproxy/local/source.py",
        find="            self._pending.pop(service_id, None)\n            if not self._stopped:\n",
        replace="            self._pending.pop(service_id, None)\n            if True:\n",
        tests=("tests.local.test_source_listen",),
        why="stopping while a bind waits to retry reports a fatal bind error (a wrong exit status)",
    ),
    Mutant(
        name="source-listener-left-after-stop",
        path="aws_localproxy/local/source.py",
        find="            if self._stopped:\n                listening_port.stopListening()\n",
        replace="            if False:\n                listening_port.stopListening()\n",
        tests=("tests.local.test_source_listen",),
        why="a SERVICE_IDS delivered after the stop leaves a port listening",
    ),
    Mutant(
        name="client-token-group-writable-not-warned",
        path="aws_localproxy/config/client_token.py",
        find="if stat.S_IMODE(mode) & 0o077:",
        replace="if stat.S_IMODE(mode) & 0o044:",
        tests=("tests.config.test_client_token_modes",),
        why="a token file that the group or others may write (0620, 0602) is used without a warning",
    ),
    Mutant(
        name="bandwidth-second-refill-timer",
        path="aws_localproxy/tunnelservice/bandwidth.py",
        find="if wait > 0 and self._timer is None:",
        replace="if wait > 0:",
        tests=("tests.tunnelservice.test_bandwidth_refill",),
        why="reads while paused add refill timers; stop cancels one and the others outlive the peer",
    ),
    Mutant(
        name="stdio-reset-then-eof-reported-back",
        path="aws_localproxy/local/stdio.py",
        find="        if connection is not None and not self._closed_by_tunnel:\n"
        "            connection.connection_lost()\n        self.close()",
        replace="        if connection is not None:\n            connection.connection_lost()\n"
        "        self.close()",
        tests=("tests.local.test_stdio_side",),
        why="stdin's EOF after the peer reset the connection is reported to the tunnel again",
    ),
    Mutant(
        name="destination-stop-leaves-connects",
        path="aws_localproxy/local/destination.py",
        find="        for pending in list(self.connecting):\n            pending.cancel()",
        replace="        pass",
        tests=("tests.local.test_destination_connect",),
        why="a stopping destination keeps connecting (and retrying) to its local services",
    ),
    Mutant(
        name="connection-backlog-not-reset-at-pause",
        path="aws_localproxy/local/connection.py",
        find="            self._write_paused = True\n            self._backlog = 0",
        replace="            self._write_paused = True",
        tests=("tests.local.test_connection_flow",),
        why="a socket that filled up twice holds the WebSocket before it is past its bound",
    ),
)
