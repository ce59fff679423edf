"""What became of a request: the one definition the ledger, `gateway usage`, the A/B metrics and
Prometheus share.

- `ok`: answered in full.
- `failed`: the gateway or its upstreams did not deliver the answer - an HTTP status of 500 or
  more, or a stream whose headers (200) were sent and that then ended with an error (cut,
  malformed, timed out). These are what "errors" and `error_rate` count.
- `refused`: the request was turned away on its merits - 4xx: bad input, authentication, a rate
  limit or budget, a guardrail block.
- `client_gone`: the client hung up first (499, or a stream the client stopped reading). Neither
  an error of the gateway nor a refusal.
"""

from __future__ import annotations

OK, FAILED, REFUSED, CLIENT_GONE = "ok", "failed", "refused", "client_gone"
OUTCOMES = (OK, FAILED, REFUSED, CLIENT_GONE)
CLIENT_DISCONNECTED = "client_disconnected"  # the error kind the stream relay records


def outcome(status: int, error: str | None) -> str:
    """`error`: the ledger's short error kind (the request's, or the stream's once headers were sent)."""
    if status == 499 or error == CLIENT_DISCONNECTED:
        return CLIENT_GONE
    if status >= 500:
        return FAILED
    if status >= 400:
        return REFUSED
    return FAILED if error else OK


# The same rule in SQL, for rows written before the ledger stored the outcome (migration v5).
OUTCOME_SQL = f"""CASE
    WHEN status = 499 OR error = '{CLIENT_DISCONNECTED}' THEN '{CLIENT_GONE}'
    WHEN status >= 500 THEN '{FAILED}'
    WHEN status >= 400 THEN '{REFUSED}'
    WHEN error IS NOT NULL THEN '{FAILED}'
    ELSE '{OK}' END"""
