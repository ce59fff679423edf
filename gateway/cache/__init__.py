"""The response cache: settings, request keys, the store protocol, and the request-path logic."""
