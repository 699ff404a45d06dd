"""The console scripts and the twistd plugin."""
