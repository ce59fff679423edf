"""Where shared state lives: the embedded default (in-process counters, SQLite) or, for several
workers and replicas, Redis. A backend is chosen once at start-up from `state:` in gateway.yaml."""
