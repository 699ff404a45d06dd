# mypy: disallow-untyped-calls=False
# (this module subclasses or calls Twisted/Autobahn APIs that have no annotations)
"""
The ``localtunnel`` console script: the service in the foreground, with a banner.

Same options as ``twistd localtunnel`` (L{tap.Options}).  Once listening it
prints the endpoint, where the CA is, and the commands that open a tunnel
and connect local proxies to it.
"""

from __future__ import annotations

import sys
from typing import Any, List, Optional, TextIO

from twisted.internet.defer import Deferred
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.python import usage

from aws_localproxy.tunnelservice.server import RunningTunnelService
from aws_localproxy.tunnelservice.tap import Options, StartRefused, makeService


def banner(running: RunningTunnelService, region: str) -> str:
    """What the console script prints once the service listens."""
    if running.use_tls:
        ca_env = "AWS_CA_BUNDLE=%s " % (running.ca_file,)
        ca_lines = [
            "CA certificate:    %s" % (running.ca_file,),
            "CA directory (-c): %s" % (running.capath,),
        ]
        capath = " -c %s" % (running.capath,)
    else:
        ca_env = ""
        ca_lines = ["TLS:               off (--no-tls, debugging only)"]
        capath = ""
    lines = [
        "Local tunnel service listening",
        "Endpoint:          %s" % (running.endpoint,),
        "Management API:    %s" % (running.api_url,),
        *ca_lines,
        "",
        (
            "Open a tunnel (sign with a key pair of the --credentials file):"
            if running.signature_check is not None
            else "Open a tunnel (any credentials work):"
        ),
        "  %saws iotsecuretunneling open-tunnel --region %s --endpoint-url %s "
        "--destination-config services=SSH1" % (ca_env, region, running.api_url),
        "",
        "Then connect the local proxies with its tokens:",
        # -e names the endpoint, so no -r (the proxy refuses both).
        "  localproxy -e %s%s -s 5555 -t <sourceAccessToken>" % (running.endpoint, capath),
        "  localproxy -e %s%s -d 22 -t <destinationAccessToken>" % (running.endpoint, capath),
    ]
    return "\n".join(lines) + "\n"


def main(
    argv: Optional[List[str]] = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr
) -> None:
    """Entry point of ``localtunnel``."""
    config = Options()
    try:
        config.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as error:
        print("localtunnel: %s" % (error,), file=err)
        if not isinstance(error, StartRefused):
            print(config, file=err)
        raise SystemExit(2) from None

    from twisted.internet import task

    def run(reactor: Any) -> Deferred[None]:
        observer: Any = FilteringLogObserver(
            textFileLogObserver(err), [LogLevelFilterPredicate(LogLevel.info)]
        )
        globalLogBeginner.beginLoggingTo([observer])
        service: Any = makeService(config, reactor)
        done: Deferred[None] = Deferred()
        service.ready.addCallback(
            lambda running: (out.write(banner(running, config["region"])), out.flush())
        )
        service.ready.addErrback(done.errback)
        reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
        service.startService()
        return done

    task.react(run)


if __name__ == "__main__":
    main()
