"""The edges to the OS and to the private parts of dependencies."""
