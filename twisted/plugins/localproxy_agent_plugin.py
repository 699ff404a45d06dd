"""twistd plugin: ``twistd localproxy-agent ...`` (the options of the ``localproxy-agent`` command)."""

from twisted.application.service import ServiceMaker

localproxy_agent = ServiceMaker(
    "AWS IoT Secure Tunneling device agent",
    "aws_localproxy.agent.tap",
    "Opens a destination local proxy for every tunnel notified for this thing over MQTT",
    "localproxy-agent",
)
