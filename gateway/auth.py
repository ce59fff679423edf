"""Gateway API keys: declared by SHA-256 hash or env var name (never plaintext), each with a policy."""

from __future__ import annotations

import fnmatch
import hashlib
import re
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.errors import AuthError, PermissionDenied
from gateway.metering.limits import Limits, Scope


class KeyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    sha256: str | None = Field(default=None, description="hex SHA-256 of the key: `gateway hash-key`")
    env: str | None = Field(default=None, description="name of an env var holding the key")
    models: list[str] = Field(default_factory=lambda: ["*"], description="allowed models; globs allowed")
    policy: str = "default"
    admin: bool = False
    group: str | None = Field(default=None, description="a team/app in `groups:` whose limits also apply")
    limits: Limits | None = None

    @field_validator("sha256")
    @classmethod
    def _hex(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", v):
            raise ValueError("must be 64 hex characters (the SHA-256 of the key; `gateway hash-key` prints it)")
        return v.lower() if v else v

    @model_validator(mode="after")
    def _one_source(self) -> KeyConfig:
        if (self.sha256 is None) == (self.env is None):
            raise ValueError("give exactly one of `sha256` or `env` (keys are never written in plaintext)")
        return self


class OpenModeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    policy: str = "default"
    models: list[str] = Field(default_factory=lambda: ["*"])
    limits: Limits | None = None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(slots=True, frozen=True)
class Principal:
    """Who is calling: a declared key, or the anonymous caller of open mode."""

    name: str
    policy: str
    models: tuple[str, ...]
    admin: bool = False
    group: str | None = None
    scopes: tuple[Scope, ...] = ()  # rate limits / budgets that apply: the key's own, then its group's

    def may_use(self, model: str) -> bool:
        if "*" in self.models:
            return True
        return any(p == model or fnmatch.fnmatchcase(model, p) for p in self.models)

    def check_model(self, model: str) -> None:
        if not self.may_use(model):
            raise PermissionDenied(f"The key {self.name!r} may not use model {model!r}.", param="model")


class KeyRing:
    def __init__(self, by_hash: dict[str, Principal], open_principal: Principal | None) -> None:
        self._by_hash = by_hash
        self.open_principal = open_principal

    @property
    def open_mode(self) -> bool:
        return self.open_principal is not None

    def policies_in_use(self) -> set[str]:
        """Policies some usable key (or open mode) sends requests through."""
        used = {p.policy for p in self._by_hash.values()}
        if self.open_principal is not None:
            used.add(self.open_principal.policy)
        return used

    def by_digest(self) -> dict[str, Principal]:
        """Declared keys by the SHA-256 of the key (the console matches its sessions against them)."""
        return dict(self._by_hash)

    def authenticate(self, authorization: str | None) -> Principal:
        if self.open_principal is not None:
            return self.open_principal
        if not authorization:
            raise AuthError(
                "Missing API key. Send `Authorization: Bearer <gateway key>` (the openai SDK's api_key)."
            )
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError("Malformed Authorization header; expected `Bearer <gateway key>`.")
        principal = self._by_hash.get(hash_key(token))
        if principal is None:
            raise AuthError("Incorrect API key provided for this gateway.")
        return principal
