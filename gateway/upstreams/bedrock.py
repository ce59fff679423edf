"""Amazon Bedrock's Converse API as an upstream (`type: bedrock`): `/model/{id}/converse` and
`/model/{id}/converse-stream`, translated from and to the chat form by bedrock_wire.py.

Requests are signed with SigV4 by botocore (only its signer and event-stream decoder are used: no
boto3, no AWS SDK session), or carry a Bedrock API key as a bearer token. Streams arrive in AWS's
binary event-stream framing (`application/vnd.amazon.eventstream`), each message CRC-checked.
The region and credentials are read at start-up; a missing one is a start-up problem naming the
gateway.yaml field and env var, never a request failing at the provider.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Literal
from urllib.parse import quote

import aiohttp
import orjson
import yarl
from pydantic import Field, field_validator

from gateway.exchange import Exchange
from gateway.upstreams.base import UpstreamError
from gateway.upstreams.bedrock_wire import StreamTranslator, to_completion, to_converse
from gateway.upstreams.http import FramedStream, HttpPool, HttpUpstream, HttpUpstreamSettings, TranslatedStream
from gateway.upstreams.openai import http_url

EVENT_STREAM = "application/vnd.amazon.eventstream"


class BedrockUpstreamConfig(HttpUpstreamSettings):
    type: Literal["bedrock"]
    region: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d$", description=(
        "AWS region, e.g. us-east-1 (default: $AWS_REGION or $AWS_DEFAULT_REGION)"))
    endpoint_url: str | None = Field(default=None, description=(
        "default https://bedrock-runtime.<region>.amazonaws.com; set it for a VPC endpoint or a proxy"))
    auth: Literal["sigv4", "bearer"] = Field(default="sigv4", description=(
        "sigv4: sign with an access key; bearer: a Bedrock API key ($AWS_BEARER_TOKEN_BEDROCK)"))
    access_key_id_env: str = "AWS_ACCESS_KEY_ID"
    secret_access_key_env: str = "AWS_SECRET_ACCESS_KEY"
    session_token_env: str = Field(default="AWS_SESSION_TOKEN", description="used when set (temporary credentials)")
    bearer_token_env: str = "AWS_BEARER_TOKEN_BEDROCK"
    prompt_caching: Literal["off", "auto"] = Field(default="off", description=(
        "auto: cache points after the system prompt and the conversation so far (Claude and Nova models)"))

    @field_validator("endpoint_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        return http_url(v) if v is not None else None

    @property
    def api_key_env(self) -> str:
        """The env var whose absence means no credentials (runtime.py reads it as for other types)."""
        return self.secret_access_key_env if self.auth == "sigv4" else self.bearer_token_env

    def resolved_region(self) -> str | None:
        return self.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None

    def problems(self) -> list[tuple[str, str]]:
        """(field, what is missing) for start-up checks beyond the secret itself."""
        out = []
        if self.resolved_region() is None:
            out.append(("region", "no region: set `region:` or $AWS_REGION"))
        if self.auth == "sigv4" and not os.environ.get(self.access_key_id_env):
            out.append(("access_key_id_env", f"env var {self.access_key_id_env} is not set"))
        try:
            import botocore  # noqa: F401
        except ImportError:
            out.append(("type", "Bedrock needs botocore: pip install 'llm-gateway[bedrock]'"))
        return out


class BedrockUpstream(HttpUpstream):
    stream_usage = False  # the stream's `metadata` event always carries usage

    def __init__(self, name: str, cfg: BedrockUpstreamConfig, pool: HttpPool, api_key: str | None) -> None:
        region = cfg.resolved_region() or ""
        headers = dict(cfg.headers)
        self._auth = None
        if cfg.auth == "bearer":
            headers["Authorization"] = f"Bearer {api_key}"
        else:
            from botocore.auth import SigV4Auth
            from botocore.credentials import Credentials

            credentials = Credentials(os.environ.get(cfg.access_key_id_env, ""), api_key or "",
                                      os.environ.get(cfg.session_token_env) or None)
            self._auth = SigV4Auth(credentials, "bedrock", region)
        super().__init__(name, pool, api_key, headers, cfg.timeouts, cfg.max_connections)
        self.cfg = cfg
        self._base = cfg.endpoint_url or f"https://bedrock-runtime.{region}.amazonaws.com"

    def _url(self, model: str, action: str) -> yarl.URL:
        # the model id (an ARN or inference profile may hold ':' and '/') is percent-encoded once in
        # the path; `encoded=True` keeps aiohttp from normalising it back, which would void the signature
        return yarl.URL(f"{self._base}/model/{quote(model, safe='')}/{action}", encoded=True)

    def _signed(self, url, data: bytes) -> dict[str, str]:
        if self._auth is None:
            return {}
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method="POST", url=str(url), data=data, headers={"Content-Type": "application/json"})
        self._auth.add_auth(request)
        return {k: v for k, v in request.headers.items() if k.lower() != "content-type"}

    async def chat(self, ex: Exchange, model: str, body: dict[str, Any]) -> dict[str, Any]:
        return to_completion(await self._post_json(ex, self._url(model, "converse"),
                                                  to_converse(body, self.cfg.prompt_caching == "auto")), ex.id, model)

    async def open_stream(self, ex: Exchange, model: str, body: dict[str, Any]) -> TranslatedStream:
        inner = await self._open_sse(ex, self._url(model, "converse-stream"),
                                     to_converse(body, self.cfg.prompt_caching == "auto"),
                                     content_type=EVENT_STREAM, reader=EventStreamReader)
        return TranslatedStream(inner, StreamTranslator(ex.id, model))

    async def embeddings(self, ex: Exchange, model: str, body: dict[str, Any]) -> dict[str, Any]:
        raise UpstreamError("http_404", f"upstream {self.name!r} (Bedrock) is not set up for embeddings here", status=404)


class EventStreamReader(FramedStream):
    """AWS event-stream messages as JSON payloads `{"_event": type, ...}` (an exception message as
    `{"_event": "exception", "exception": type, "message": ...}`)."""

    cut_message = "upstream closed the stream in the middle of a message"

    def __init__(self, resp: aiohttp.ClientResponse, slots: asyncio.Semaphore, scrub) -> None:
        from botocore.eventstream import EventStreamBuffer

        super().__init__(resp, slots, scrub)
        self._buffer = EventStreamBuffer()

    def _pending(self) -> bool:
        return bool(self._buffer._data)  # noqa: SLF001 - bytes of an unfinished message

    def _decode(self, chunk: bytes) -> None:
        from botocore.eventstream import ParserError

        self._buffer.add_data(chunk)
        try:
            for message in self._buffer:
                headers = message.headers
                kind = headers.get(":message-type")
                payload = orjson.loads(message.payload or b"{}")
                if kind == "event":
                    self._events.append(orjson.dumps({"_event": headers.get(":event-type"), **payload}))
                else:  # exception or error
                    name = headers.get(":exception-type") or headers.get(":error-code") or "error"
                    self._events.append(orjson.dumps({"_event": "exception", "exception": name, "message": self._scrub(
                        str(payload.get("message") or headers.get(":error-message") or name))}))
        except (ParserError, orjson.JSONDecodeError) as e:  # a bad CRC, a frame too long, a payload not JSON
            raise UpstreamError("bad_response", f"upstream sent a malformed event-stream message ({type(e).__name__})"
                                ) from None
