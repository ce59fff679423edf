"""Reading and validating the files in `policies/` (gateway.yaml and guardrail policies)."""
