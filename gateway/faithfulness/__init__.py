"""Is an answer supported by the documents it was given? Claim-level scoring, no I/O."""
