"""One local proxy, wired."""
