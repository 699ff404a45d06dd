"""
N local proxies in one process, for the memory each extra tunnel costs.

``python bench/_many.py SPEC_FILE`` reads one JSON object from SPEC_FILE
(tokens stay off the command line)::

    {"mode": "source" | "destination", "endpoint": "127.0.0.1:PORT",
     "capath": DIR, "tunnels": [{"token": ..., "target": PORT}, ...]}

and starts one L{LocalProxyService} per tunnel, service ID ``bench``: a
source listens on a port the OS picks, a destination forwards to
127.0.0.1:target.  Once every one is started (sources: connected and
listening; a destination hears its service IDs only when a source connects,
so the caller asks the local tunnel service about destinations) it
prints ``READY`` and a JSON list of the source ports on one line, then runs until it is
terminated.  Logging goes to stderr at warning level only: Twisted keeps
events in memory until logging begins, which would count as memory per
tunnel.
"""

from __future__ import annotations

import json
import sys
from typing import Any, List

from twisted.internet import defer, task
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)

from aws_localproxy.config.proxy_config import ProxyConfig
from aws_localproxy.protocol.constants import Mode
from aws_localproxy.proxy.service import LocalProxyService


@defer.inlineCallbacks
def run(reactor: Any, spec: Any) -> Any:
    host, port = spec["endpoint"].rsplit(":", 1)
    mode = Mode.SOURCE if spec["mode"] == "source" else Mode.DESTINATION
    services: List[LocalProxyService] = []
    for tunnel in spec["tunnels"]:
        if mode is Mode.SOURCE:
            service_map = {"bench": "0"}
        else:
            service_map = {"bench": f"127.0.0.1:{tunnel['target']}"}
        config = ProxyConfig(
            mode=mode,
            access_token=tunnel["token"],
            endpoint_host=host,
            endpoint_port=int(port),
            service_map=service_map,
            bind_address="127.0.0.1" if mode is Mode.SOURCE else None,
            capath=spec["capath"],
            verbosity=3,
        )
        service = LocalProxyService(config, reactor)
        service.startService()
        services.append(service)
    ports: List[int] = []
    if mode is Mode.SOURCE:
        yield defer.gatherResults([s.connected for s in services])
        ports = list((yield defer.gatherResults([s.listening_port("bench") for s in services])))
    print("READY " + json.dumps(ports), flush=True)
    yield defer.Deferred()  # until terminated


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    observer: Any = FilteringLogObserver(
        textFileLogObserver(sys.stderr), [LogLevelFilterPredicate(LogLevel.warn)]
    )
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    task.react(run, [spec])


if __name__ == "__main__":
    main()
