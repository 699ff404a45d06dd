# -*- test-case-name: tests.tunnelservice.test_cli -*-
"""
``twistd localtunnel``: the options shared with the console script, and makeService.

The reactor is not imported at module import time (the plugin loads this
lazily, and tests pass their own).
"""

from __future__ import annotations

import os
from typing import Any, Optional

from twisted.python import usage

from aws_localproxy._version import __version__
from aws_localproxy.agent.broker import BROKER_FILE_OPTIONS, broker_parameters
from aws_localproxy.protocol.constants import MAX_WEBSOCKET_FRAME_SIZE
from aws_localproxy.tunnelservice.relay import SERVICE_IDS_CHOICES
from aws_localproxy.tunnelservice.server import LocalTunnelService, is_loopback

DEFAULT_CERT_DIR = "localtunnel-certs"


class Options(usage.Options):
    """The command line of the local tunnel service."""

    synopsis = "[options]"
    longdesc = (
        "A local AWS IoT Secure Tunneling service: the data plane (wss://HOST:PORT/tunnel) "
        "and the iotsecuretunneling management API (https://HOST:PORT) on one port."
    )

    optParameters = [
        ["interface", None, "127.0.0.1", "Interface to listen on."],
        ["port", None, 0, "Port to listen on (0 picks a free one).", int],
        [
            "cert-dir",
            None,
            DEFAULT_CERT_DIR,
            "Directory of ca.pem, server.pem and server-key.pem; created with a new "
            "private CA when it has none.",
        ],
        [
            "ready-file",
            None,
            None,
            "Once listening, write {endpoint, api_url, ca_file, capath} as JSON here.",
        ],
        [
            "state-file",
            None,
            None,
            "Keep tunnels in this SQLite file, so that a restart keeps them (default: memory).",
        ],
        ["region", None, "us-east-1", "Region used in tunnel ARNs and example commands."],
        [
            "bandwidth-limit",
            None,
            0,
            "Bytes per second each tunnel carries per direction, as the AWS service caps "
            "it (800000 is its documented 800 KB/s); 0: unlimited.",
            int,
        ],
        [
            "max-connections",
            None,
            1000,
            "Connections open at once (HTTP and WebSocket); more are closed as accepted.",
            int,
        ],
        *broker_parameters(
            broker="Publish each tunnel's device notification to this MQTT broker "
            "(mqtt://HOST[:PORT] or mqtts://HOST[:PORT]) when OpenTunnel names a thingName, "
            "as AWS IoT does.",
            ca="PEM file of the CAs of the broker's certificate (default: system CAs).",
            cert="Client certificate (PEM) for the broker.",
            key="The client certificate's private key (PEM).",
        ),
        [
            "handshake-timeout",
            None,
            10.0,
            "Seconds from accept to the end of the first request (TLS handshake included).",
            float,
        ],
        # -- who may use the management API (tunnelservice/sigv4.py) --
        [
            "credentials",
            None,
            None,
            "AWS shared-credentials file (the ~/.aws/credentials format, mode 600): the "
            "management API then accepts only requests signed (Signature Version 4) with one "
            "of its profiles' key pairs. Needs botocore (aws-localproxy[tunnelservice]).",
        ],
    ]

    # The service's choices that the AWS service may make differently.
    optParameters += [
        [
            "service-ids-without-services",
            None,
            "empty",
            "SERVICE_IDS of a tunnel opened without services: 'empty' (no IDs) or "
            "'blank' (one empty ID).",
        ],
        [
            "reframe",
            None,
            0,
            "0: forward each WebSocket message as received; N (1-131076): join what is "
            "pending for a peer and cut it into N-byte frames, across record boundaries.",
            int,
        ],
    ]

    optFlags = [
        [
            "no-reset-on-reattach",
            None,
            "Do not send StreamReset to the other peer when a peer reconnects.",
        ],
        [
            "no-tls",
            None,
            "Plain ws:// and http:// (for debugging only: the local proxy and the AWS CLI "
            "expect TLS).",
        ],
        [
            "allow-unauthenticated",
            None,
            "Serve the management API without --credentials on an interface other than "
            "loopback: anyone who reaches it can list tunnels and take their tokens.",
        ],
    ]

    def opt_version(self) -> None:
        """Print the version of the local tunnel service (this project's) and exit."""
        print("localtunnel (aws-localproxy) %s" % (__version__,))
        raise SystemExit(0)

    def postOptions(self) -> None:
        if not 0 <= self["port"] <= 65535:
            raise usage.UsageError("--port must be between 0 and 65535")
        if self["max-connections"] < 1:
            raise usage.UsageError("--max-connections must be at least 1")
        if not self["handshake-timeout"] > 0:
            raise usage.UsageError("--handshake-timeout must be positive")
        if self["bandwidth-limit"] < 0:
            raise usage.UsageError("--bandwidth-limit must not be negative")
        if not self["interface"]:
            raise usage.UsageError("--interface must not be empty")
        if self["service-ids-without-services"] not in SERVICE_IDS_CHOICES:
            raise usage.UsageError(
                "--service-ids-without-services must be one of: %s"
                % (", ".join(SERVICE_IDS_CHOICES),)
            )
        if not 0 <= self["reframe"] <= MAX_WEBSOCKET_FRAME_SIZE:
            raise usage.UsageError("--reframe must be between 0 and %d" % MAX_WEBSOCKET_FRAME_SIZE)
        self["cert-dir"] = os.path.abspath(self["cert-dir"])
        self._check_credentials()
        self["mqtt-broker-config"] = None
        if self["mqtt-broker"] is not None:
            from aws_localproxy.agent.broker import BrokerConfigError, parse_broker_url

            try:
                self["mqtt-broker-config"] = parse_broker_url(
                    self["mqtt-broker"],
                    ca_file=self["mqtt-ca"],
                    cert_file=self["mqtt-cert"],
                    key_file=self["mqtt-key"],
                )
            except BrokerConfigError as error:
                raise usage.UsageError("--mqtt-broker: %s" % (error,)) from None
        elif any(self[name] is not None for name in BROKER_FILE_OPTIONS):
            raise usage.UsageError("--mqtt-ca, --mqtt-cert and --mqtt-key need --mqtt-broker")

    def _check_credentials(self) -> None:
        """
        Load C{--credentials} now (a bad file is a usage error, before
        anything listens), and refuse an open management API on an
        interface other machines can reach.
        """
        self["credentials-keys"] = None
        if self["credentials"] is not None:
            from aws_localproxy.tunnelservice.sigv4 import CredentialsError, load_credentials

            try:
                self["credentials-keys"] = load_credentials(self["credentials"])
            except CredentialsError as error:
                raise StartRefused("--credentials: %s" % (error,)) from None
        elif not self["allow-unauthenticated"] and not is_loopback(self["interface"]):
            raise StartRefused(
                "--interface %s is reachable from other machines and the management API "
                "would accept anyone: add --credentials FILE (an AWS credentials file) to "
                "require signed requests, or --allow-unauthenticated to serve it open anyway"
                % (self["interface"],)
            )


class StartRefused(usage.UsageError):
    """A usage error the message alone explains (the console script prints no usage after it)."""


def makeService(config: Options, reactor: Optional[Any] = None) -> LocalTunnelService:
    """The L{LocalTunnelService} for parsed C{config}."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    return LocalTunnelService(
        reactor,
        cert_dir=config["cert-dir"],
        interface=config["interface"],
        port=config["port"],
        use_tls=not config["no-tls"],
        state_file=config["state-file"],
        ready_file=config["ready-file"],
        region=config["region"],
        bandwidth_limit=config["bandwidth-limit"],
        max_connections=config["max-connections"],
        handshake_deadline=config["handshake-timeout"],
        mqtt_broker=config.get("mqtt-broker-config"),
        reset_on_reattach=not config["no-reset-on-reattach"],
        service_ids_without_services=config["service-ids-without-services"],
        reframe=config["reframe"],
        credentials=config.get("credentials-keys"),
    )
