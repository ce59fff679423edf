"""Model loading and execution shared by the guardrail checks: lazy, once per process, off the loop."""
