"""Classical (tabular) models: reading datasets, drift reports from the CLI."""
