"""
Test doubles shared by more than one test module, one module per thing they
stand in for.  Each records what is done to it, so a test can check it; none
opens a socket or runs a reactor.

 - L{tests.fakes.peer}: the peer proxy as our tunnel's session sees it, and
   the records it sends;
 - L{tests.fakes.hostile_peer}: the malformed records a broken or hostile
   peer sends, sorted by what the rules do with them;
 - L{tests.fakes.local}: the local side, a local connection, a socket's
   reading, and the tunnel's end of a connection as a local side sees it;
 - L{tests.fakes.tunnel}: a real L{Tunnel} on those fakes, and the shortcuts
   that script a conversation with it;
 - L{tests.fakes.tunneling_service}: the tunneling service in memory, between
   two real tunnels;
 - L{tests.fakes.websocket}: the WebSocket to the tunneling service as the
   connector sees it, and how a session ended;
 - L{tests.fakes.endpoints}: a client endpoint whose attempts are scripted;
 - L{tests.fakes.connector}: a real connector on those two;
 - L{tests.fakes.transport}: a string transport that behaves like TCP's;
 - L{tests.fakes.peer_link}: a proxy's WebSocket as our local tunnel
   service's registry and relay see it;
 - L{tests.fakes.caller}: the protocol of whoever connects through an
   endpoint under test (the web-proxy endpoints);
 - L{tests.fakes.resolver}: a name resolver that records its lookups.

A double that only one test module uses stays in that module (the
connector's doubles are here for all of its test modules,
C{tests/upstream/test_connector*.py}); harness code
(the machine, child processes, the end-to-end set-up, log capture) is in
L{tests.support}.
"""
