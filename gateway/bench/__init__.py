"""`gateway bench`: overhead and throughput, measured side by side in one run."""
