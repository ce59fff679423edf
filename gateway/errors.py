"""Typed errors that carry their HTTP status and render as OpenAI-style error bodies.

The official `openai` SDK maps status codes to exception classes (401 -> AuthenticationError,
429 -> RateLimitError, ...) and reads `error.message`, `error.type` and `error.code`, so every error a
client can see goes through `GatewayError.body()`.
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        if code is not None:
            self.code = code
        self.param = param
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.type,
            "param": self.param,
            "code": self.code,
        }
        error.update(self.extra)
        return {"error": error}


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class AuthError(GatewayError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status = 403
    type = "invalid_request_error"
    code = "model_not_allowed"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class GuardrailViolation(GatewayError):
    """A request check blocked the input."""

    status = 400
    type = "guardrail_violation"


class GuardrailUnavailable(GatewayError):
    """A check failed (crash or timeout) and its policy says fail closed."""

    status = 503
    type = "guardrail_error"
    code = "check_failed"


class UpstreamFailure(GatewayError):
    """Every target of a route failed; status is chosen from the last failure (429, 502, 504)."""

    status = 502
    type = "upstream_error"


class PolicyError(Exception):
    """A policy file is invalid. `problems` are human-readable lines naming file and line/field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))
