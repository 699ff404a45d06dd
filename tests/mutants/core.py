"""
Mutants of the protocol core and the local tunnel service's data plane: the
modules of the first mutation rounds (docs/reliability.md).
"""

from tests.support.mutation import Mutant

MUTANTS = (
    Mutant(
        name="wire-length-prefix-little-endian",
        path="aws_localproxy/protocol/wire.py",
        find="length = view[offset] << 8 | view[offset + 1]",
        replace="length = view[offset + 1] << 8 | view[offset]",
        tests=("tests.protocol.test_wire",),
        why="every record longer than 255 bytes is misread: the session ends at once",
    ),
    Mutant(
        name="wire-payload-limit-unchecked",
        path="aws_localproxy/protocol/wire.py",
        find="if length > max_payload:",
        replace="if length > max_message:",
        tests=("tests.protocol.test_wire", "tests.protocol.test_tunnel_hostile"),
        why="a payload one byte over 63 KiB is taken, where the reference ends the session",
    ),
    Mutant(
        name="source-max-active-connections-plus-one",
        path="aws_localproxy/protocol/source_rules.py",
        find="if len(service.connections) >= session.max_active_connections:",
        replace="if len(service.connections) > session.max_active_connections:",
        tests=("tests.protocol.test_source_rules",),
        why="a source accepts one connection more than tcp.max_active_connections",
    ),
    Mutant(
        name="destination-max-active-connections-plus-one",
        path="aws_localproxy/protocol/destination_rules.py",
        find="    if len(service.connections) >= session.max_active_connections:",
        replace="    if len(service.connections) > session.max_active_connections:",
        tests=("tests.protocol.test_destination_rules", "tests.protocol.test_tunnel_hostile"),
        why="a destination opens one connection more than tcp.max_active_connections",
    ),
    Mutant(
        name="session-stale-stream-delivered",
        path="aws_localproxy/protocol/tunnel_session.py",
        find="        if message.streamId != service.stream_id:",
        replace="        if message.streamId == -1:",
        tests=("tests.protocol.test_source_rules", "tests.protocol.test_destination_rules"),
        why="DATA of an old stream reaches the connections of the new one",
    ),
    Mutant(
        name="session-peer-reset-flushes-instead-of-dropping",
        path="aws_localproxy/protocol/tunnel_session.py",
        find="                lane.abort(final)",
        replace="                lane.finish(final)",
        tests=("tests.protocol.test_tunnel", "tests.protocol.test_tunnel_session"),
        why="bytes for a connection the peer reset are still sent, under an ID it forgot",
    ),
    Mutant(
        name="destination-keeps-old-stream-records",
        path="aws_localproxy/protocol/destination_rules.py",
        find="    session.withdraw_stream(service, message.streamId)",
        replace="    pass",
        tests=("tests.protocol.test_destination_rules", "tests.protocol.test_tunnel"),
        why="a restarted source's new client gets the old stream's last bytes or reset",
    ),
    Mutant(
        name="service-client-token-trailing-newline",
        path="aws_localproxy/tunnelservice/handshake.py",
        find="not CLIENT_TOKEN_RE.fullmatch(client_token)",
        replace="not CLIENT_TOKEN_RE.match(client_token)",
        tests=("tests.tunnelservice.test_rules",),
        why="the data plane takes client tokens with characters after the allowed 128",
    ),
    Mutant(
        name="service-no-reset-on-reattach",
        path="aws_localproxy/tunnelservice/relay.py",
        find="        if self.options.reset_on_reattach:\n            self._reset_streams(tunnel, slot)",
        replace="        if False:\n            self._reset_streams(tunnel, slot)",
        tests=("tests.tunnelservice.test_relay",),
        why="a replaced peer's streams stay open on the other side: its clients hang",
    ),
)
