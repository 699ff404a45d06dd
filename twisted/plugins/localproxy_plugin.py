"""twistd plugin: ``twistd localproxy ...`` (the options of the ``localproxy`` command)."""

from twisted.application.service import ServiceMaker

localproxy = ServiceMaker(
    "AWS IoT Secure Tunneling local proxy",
    "aws_localproxy.cli.tap",
    "A source or destination local proxy for AWS IoT Secure Tunneling",
    "localproxy",
)
