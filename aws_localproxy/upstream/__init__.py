"""The link to the tunneling service."""
