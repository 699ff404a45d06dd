"""
The device agent: destinations opened when the AWS tunneling service notifies.

A device subscribes to ``$aws/things/<thingName>/tunnels/notify``; for each
tunnel opened for the thing it runs a destination local proxy, all of them
in one process and one reactor.  Modules, bottom up: L{notification} (the
message), L{broker} (where the broker is, TLS), L{mqtt} (paho-mqtt driven
on the reactor, reconnecting), L{tunnels} (the destinations), L{service}
(the C{IService} joining them), L{options}, L{cli} and L{tap}.
"""
