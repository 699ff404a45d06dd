"""``twistd localtunnel``: the local AWS IoT Secure Tunneling service."""

from twisted.application.service import ServiceMaker

localtunnel = ServiceMaker(
    "localtunnel",
    "aws_localproxy.tunnelservice.tap",
    "A local AWS IoT Secure Tunneling service (data plane and management API)",
    "localtunnel",
)
