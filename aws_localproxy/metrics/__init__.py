"""What a proxy counts, and the page that serves it."""
