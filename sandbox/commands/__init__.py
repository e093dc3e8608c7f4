"""One module per `sandbox` command; see `sandbox/cli.py`."""
