"""The project's version, read by setup.py and shown by ``localproxy --version``."""

__version__ = "0.1.0"
