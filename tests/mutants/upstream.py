"""
Mutants of the WebSocket to the tunneling service, its TLS layer, the write
that sends at once (C{write_now}) and the socket options: the clusters the
suite once let through (issue 21), each now killed by tests of what a peer
or a user sees.
"""

from tests.support.mutation import Mutant

MUTANTS = (
    Mutant(
        name="write-now-ahead-of-a-partial-write",
        path="aws_localproxy/adapters/twisted_private.py",
        find="        not transport.dataBuffer\n        and not transport._tempDataLen",
        replace="        not transport._tempDataLen",
        tests=("tests.adapters.test_twisted_private.WriteNowTests",),
        why="a write while the reactor still holds the rest of an earlier partial write "
        "reaches the socket ahead of that rest: the peer gets the bytes out of order",
    ),
    Mutant(
        name="websocket-header-need-counted-from-the-read",
        path="aws_localproxy/upstream/websocket.py",
        find="                    need = start - position",
        replace="                    need = start + position",
        tests=("tests.upstream.test_websocket_frames.SplitHeaderTests",),
        why="a frame whose extended length is cut by a read, not the first frame of its "
        "read, waits for bytes that may never come: the session stalls",
    ),
    Mutant(
        name="websocket-close-reply-dropped",
        path="aws_localproxy/upstream/websocket.py",
        find="            if self.state != self.STATE_OPEN:\n                break",
        replace="            if self.state != self.STATE_OPEN:\n                return b''",
        tests=("tests.upstream.test_websocket_frames.AutobahnsFramesTests",),
        why="the rest of a read after the message the session closed on is dropped: the "
        "service's close reply is lost and the close is never clean",
    ),
    Mutant(
        name="websocket-no-unsent-limit",
        path="aws_localproxy/upstream/websocket.py",
        find="        set_not_sent_low_water(self.transport, NOTSENT_LOWAT)\n",
        replace="",
        tests=("tests.upstream.test_websocket_sockets.RealSocketTests",),
        why="the kernel queues megabytes of the WebSocket's bytes before back-pressure "
        "starts: round trips through the tunnel grow with them",
    ),
    Mutant(
        name="websocket-scheduler-not-the-producer",
        path="aws_localproxy/upstream/websocket.py",
        find="        transport.registerProducer(outbound, True)\n",
        replace="",
        tests=(
            "tests.upstream.test_websocket_session.InboundFlowTests",
            "tests.upstream.test_websocket_sockets.RealSocketTests",
        ),
        why="the scheduler is never paused when the WebSocket's transport is full: its "
        "buffer grows without bound while the service reads slowly",
    ),
    Mutant(
        name="tls-close-notify-unanswered",
        path="aws_localproxy/upstream/tls_layer.py",
        find="            tls_shutdown(self)\n            tls_shutdown_finished(self, None)",
        replace="            tls_shutdown_finished(self, None)",
        tests=("tests.upstream.test_tls_layer.InMemoryTests",),
        why="the service's close_notify is not answered: the service sees the connection "
        "cut instead of a clean TLS close",
    ),
    Mutant(
        name="tls-handshake-never-marked-done",
        path="aws_localproxy/upstream/tls_layer.py",
        find="if bio is None or not self._handshakeDone or self._appSendBuffer",
        replace="if bio is None or not self._handshakeDone and self._appSendBuffer",
        tests=("tests.upstream.test_tls_layer.RealSocketTests",),
        why="when nothing was written during the handshake, Twisted never learns it is "
        "done: every close of that connection is an abort",
    ),
    Mutant(
        name="tls-full-send-bio-read-dropped",
        path="aws_localproxy/upstream/tls_layer.py",
        find="        if count <= 0:  # empty: a memory BIO has no other way to fail a read\n"
        "            break",
        replace="        if count <= 0:  # empty: a memory BIO has no other way to fail a read\n"
        "            return []",
        tests=("tests.upstream.test_tls_layer.InMemoryTests",),
        why="a write whose ciphertext is exactly one read of the send BIO (256 KiB) is "
        "never sent: the TLS stream loses a record and the service drops the session",
    ),
)
