"""What a proxy is built from."""
