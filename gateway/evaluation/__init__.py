"""Offline eval suites: datasets, targets, assertions, judges, gates and tracked runs (`gateway eval`).
Never imported by the server (`gateway/app.py`)."""
