"""Offline statistics (A/B tests, drift): pure numpy/scipy, no I/O, never imported by the server's hot path."""
