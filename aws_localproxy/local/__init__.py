"""The local side of a proxy."""
