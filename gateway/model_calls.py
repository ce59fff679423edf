"""Model calls the gateway makes on its own behalf (an LLM judge inside a check), through the same
routing, retries and metering as client requests: a judge's tokens are billed to the key whose request
it checked, and its ledger row points at that request (metadata `judge_for`)."""

from __future__ import annotations

import time
from typing import Any

from gateway.conversation import completion_text
from gateway.exchange import Exchange, GatewayOptions

MODEL_CALLER = "gateway.model_caller"  # Exchange.state key: the ModelCaller of the request


class ModelCaller:
    def __init__(self, app: Any, rt: Any, parent: Exchange) -> None:
        self.app, self.rt, self.parent = app, rt, parent

    async def chat(self, model: str, messages: list[dict[str, Any]], **params: Any) -> str:
        """The text of one non-streamed chat completion from `model` (a model name in gateway.yaml)."""
        from gateway.keys import METER

        parent = self.parent
        child = Exchange("chat.completions", {"model": model, "messages": messages, **params},
                         GatewayOptions(metadata={"judge_for": parent.id}))
        child.key_name, child.group, child.policy, child.model = parent.key_name, parent.group, "judge", model
        child.metered = parent.metered
        child.trace = parent.trace  # its attempts hang under the check that asked (tracing.CURRENT_PARENT)
        meter = self.app[METER] if child.metered else None
        status = 500
        try:
            route = self.rt.router.get(model)
            t0 = time.perf_counter()
            data = await self.rt.router.call(child, route, lambda upstream, m: upstream.chat(child, m, child.body))
            parent.upstream_ms += (time.perf_counter() - t0) * 1000  # judge time is model time, not overhead
            if meter is not None:
                meter.settle(child, self.rt, data.get("usage"), completion_text(data), data.get("model"))
            status = 200
            choices = data.get("choices") or [{}]
            return str((choices[0].get("message") or {}).get("content") or "")
        finally:
            if meter is not None:
                meter.finish(child, status, child.group)
            parent.state.setdefault("judge_calls", []).append(
                {"request_id": child.id, "model": model, "status": status,
                 **({"usage": child.usage.to_json(), "cost_usd": child.cost_usd} if child.usage else {})})
