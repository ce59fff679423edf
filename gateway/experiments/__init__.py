"""A/B experiments: declared in `policies/experiments.yaml`, assigned in the gateway, analysed offline."""
