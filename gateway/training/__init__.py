"""Training the learned guardrail detectors from ../shared/data/train (offline; never imported by the server)."""
