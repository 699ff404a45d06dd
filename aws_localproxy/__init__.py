"""
aws-localproxy: the AWS IoT Secure Tunneling local proxy as a Twisted protocol stack.

The public API is re-exported here as its modules land; see docs/architecture.md.
"""

from aws_localproxy._version import __version__

__all__ = ["__version__"]
