"""Operator command line for the app's HTTP API: `python -m segexp --help`."""
