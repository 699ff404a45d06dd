"""The tunnel protocol without I/O."""
