"""Token counting (and, later, prices and the usage ledger)."""
