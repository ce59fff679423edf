"""`console:` in gateway.yaml: the web console at /ui (read at start-up)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ConsoleSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(default=True, description="serve the console at /ui (admin keys log in)")
    session_hours: float = Field(default=8, gt=0, le=24 * 30, description=(
        "how long a console login lasts before the admin key must be given again"))
    secret_env: str = Field(default="GATEWAY_CONSOLE_SECRET", min_length=1, description=(
        "env var holding the key that signs session cookies (32+ characters). Set the same value on every "
        "replica so a login works on all of them; unset, a random key is kept in the state directory "
        "(console.secret), or in memory when there is no state directory"))
