"""PII detection and anonymization: presidio plus our own recognizers and a refinement pass."""
