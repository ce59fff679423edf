"""What each assertion checks of one answer. Deterministic ones are pure; semantic ones use the
guardrail models (MiniLM, the faithfulness scorer, the PII engine); `llm-rubric` asks a judge model
through the gateway and insists on a JSON verdict (invalid JSON is retried, then an error - never
a pass or a fail)."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any

from gateway.evaluation.client import GatewayClient, Reply
from gateway.evaluation.suite import AssertionSpec, Case


@dataclass
class Outcome:
    assertion: str
    passed: bool | None  # None: the assertion could not be evaluated (error)
    score: float | None = None
    reason: str = ""
    judge_votes: list[bool] | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"assertion": self.assertion, "passed": self.passed}
        if self.score is not None:
            out["score"] = round(self.score, 4)
        if self.reason:
            out["reason"] = self.reason
        if self.judge_votes is not None:
            out["judge_votes"] = self.judge_votes
        return out


JUDGE_SYSTEM = (
    "You grade an AI assistant's answer against a rubric. Reply with JSON only, no prose: "
    '{"score": number from 0 to 1, "pass": true or false, "reason": "one short sentence"}'
)


class Assessor:
    """Holds the lazily loaded models the semantic assertions need (shared across cases)."""

    def __init__(self, client: GatewayClient) -> None:
        self.client = client
        self._pii: dict[tuple, Any] = {}
        self._faith: Any = None

    async def check(self, spec: AssertionSpec, case: Case, reply: Reply, question: str,
                    threshold: float = 0.5) -> Outcome:
        name = spec.label
        if reply.error is not None:
            return Outcome(name, None, reason=f"no answer: {reply.error}")
        if spec.type in ("correct", "abs-error"):
            if reply.prediction is None or case.truth is None:
                return Outcome(name, None, reason="needs a tabular target and the case's `truth`")
            if spec.type == "correct":
                return Outcome(name, float(reply.prediction >= threshold) == case.truth, reply.prediction)
            err = abs(reply.prediction - case.truth)
            return Outcome(name, err <= float(spec.value), err)
        text = reply.text
        try:
            match spec.type:
                case "equals":
                    a, b = (text.strip(), str(spec.value).strip())
                    ok = a.lower() == b.lower() if spec.ignore_case else a == b
                    return Outcome(name, ok)
                case "contains" | "not-contains":
                    hay, needle = (text.lower(), str(spec.value).lower()) if spec.ignore_case else (text, str(spec.value))
                    found = needle in hay
                    return Outcome(name, found if spec.type == "contains" else not found)
                case "regex":
                    return Outcome(name, re.search(str(spec.value), text, re.I if spec.ignore_case else 0) is not None)
                case "is-json":
                    return _is_json(name, text, spec.schema_)
                case "max-tokens":
                    n = reply.output_tokens
                    if n is None:
                        from gateway.metering.tokenizer import count_tokens

                        n = count_tokens(text)
                    return Outcome(name, n <= float(spec.value), float(n))
                case "latency-ms":
                    if reply.cached:
                        return Outcome(name, reply.latency_ms <= float(spec.value), reply.latency_ms, "cached latency")
                    return Outcome(name, reply.latency_ms <= float(spec.value), reply.latency_ms)
                case "cost-usd":
                    if reply.cost_usd is None:
                        return Outcome(name, None, reason="no price known for this model")
                    return Outcome(name, reply.cost_usd <= float(spec.value), reply.cost_usd)
                case "similar":
                    if not case.reference:
                        return Outcome(name, None, reason="case has no `reference`")
                    score = await asyncio.to_thread(_similarity, text, case.reference)
                    return Outcome(name, score >= (spec.threshold if spec.threshold is not None else 0.7), score)
                case "faithfulness":
                    docs = case.documents()
                    if not docs:
                        return Outcome(name, None, reason="case has no `context`")
                    checker = self._faithfulness()
                    score = await asyncio.to_thread(checker.score, text, docs, question)
                    # The score is the check's calibrated probability that the documents support the
                    # answer; with no threshold in the suite the check's own (the model card's) applies.
                    threshold = spec.threshold if spec.threshold is not None else checker.threshold
                    return Outcome(name, score >= threshold, score)
                case "pii-free":
                    found = await asyncio.to_thread(self._pii_engine(spec).detect, text)
                    kinds = sorted({e.type for e in found})
                    return Outcome(name, not found, float(len(found)), ", ".join(kinds))
                case "llm-rubric":
                    return await self._rubric(spec, case, text, question)
                case "pairwise":
                    return Outcome(name, None, reason="pending: judged once every target has answered")
        except Exception as e:  # one broken assertion is recorded as an error, the run goes on
            return Outcome(name, None, reason=f"{type(e).__name__}: {e}"[:300])
        return Outcome(name, None, reason=f"unknown assertion {spec.type}")

    def _faithfulness(self):
        from gateway.checks.faithfulness import Faithfulness, FaithfulnessParams

        if self._faith is None:  # loads the weights once per run, not once per case
            self._faith = Faithfulness(FaithfulnessParams())
        return self._faith

    def _pii_engine(self, spec: AssertionSpec):
        from gateway.checks.pii import Pii, PiiParams

        key = tuple(spec.entities or ())
        if key not in self._pii:
            params = PiiParams(entities={e: "flag" for e in spec.entities}) if spec.entities else PiiParams()
            self._pii[key] = Pii(params)
        return self._pii[key]

    async def _rubric(self, spec: AssertionSpec, case: Case, text: str, question: str) -> Outcome:
        votes: list[bool] = []
        scores: list[float] = []
        reasons: list[str] = []
        errors: list[str] = []
        for i in range(spec.repeat):
            verdict, error = await self._judge_once(spec, question, text, i)
            if verdict is None:
                errors.append(error)
                continue
            votes.append(verdict["pass"])
            scores.append(verdict["score"])
            reasons.append(verdict.get("reason", ""))
        if not votes:
            return Outcome(spec.label, None, reason=f"judge gave no valid verdict: {errors[-1]}")
        mean = sum(scores) / len(scores)
        if spec.aggregate == "mean":
            threshold = spec.threshold if spec.threshold is not None else 0.5
            passed = mean >= threshold
        else:  # majority of votes; a tie fails
            passed = sum(votes) * 2 > len(votes)
        return Outcome(spec.label, passed, mean, reasons[0][:200], votes)

    async def _judge_once(self, spec: AssertionSpec, question: str, text: str, i: int) -> tuple[dict | None, str]:
        messages = [{"role": "system", "content": JUDGE_SYSTEM},
                    {"role": "user", "content": f"Rubric:\n{spec.rubric}\n\nQuestion:\n{question}\n\nAnswer:\n{text}"}]
        return await self._ask_judge(spec, messages, i, parse_rubric)

    async def _ask_judge(self, spec: AssertionSpec, messages: list[dict], seed: int, parse) -> tuple[Any, str]:
        """The judge's parsed verdict, or (None, why). Invalid JSON is asked again, three tries in all,
        each with a new seed so the retry is not served the same cached reply."""
        error = ""
        for attempt in range(3):
            reply = await self.client.chat(spec.judge, messages, {"temperature": 0, "seed": seed * 10 + attempt})
            if reply.error is not None:
                return None, reply.error
            verdict, error = parse(reply.text)
            if verdict is not None:
                return verdict, ""
        return None, error

    async def pairwise(self, spec: AssertionSpec, question: str, answer: str, baseline: str) -> Outcome:
        """Is `answer` better than the baseline's? Judged in both orders; if the two orders disagree
        (position bias), it is a tie. Score: 1 win, 0.5 tie, 0 loss; passes unless it lost."""
        verdicts = []
        for order, (first, second) in enumerate(((answer, baseline), (baseline, answer))):
            winner, error = await self._prefer(spec, question, first, second, order)
            if winner is None:
                return Outcome(spec.label, None, reason=f"judge gave no valid verdict: {error}")
            # map back to "candidate" / "baseline" / "tie"
            verdicts.append("tie" if winner == "tie" else
                            ("candidate" if (winner == "A") == (order == 0) else "baseline"))
        result = verdicts[0] if verdicts[0] == verdicts[1] else "tie"
        score = {"candidate": 1.0, "tie": 0.5, "baseline": 0.0}[result]
        return Outcome(spec.label, result != "baseline", score, f"{result} (orders: {verdicts[0]}, {verdicts[1]})")

    async def _prefer(self, spec: AssertionSpec, question: str, a: str, b: str, seed: int) -> tuple[str | None, str]:
        messages = [{"role": "system", "content": PAIRWISE_SYSTEM},
                    {"role": "user", "content": f"Criteria:\n{spec.rubric or 'Which answer is more helpful and correct?'}"
                                                f"\n\nQuestion:\n{question}\n\nAnswer A:\n{a}\n\nAnswer B:\n{b}"}]
        return await self._ask_judge(spec, messages, seed, parse_winner)


PAIRWISE_SYSTEM = ('You compare two answers to the same question. Reply with JSON only: '
                   '{"winner": "A" or "B" or "tie", "reason": "one short sentence"}')


def _json_object(text: str) -> tuple[dict | None, str]:
    m = re.search(r"\{.*\}", text or "", re.S)
    if not m:
        return None, "judge reply holds no JSON object"
    try:
        data = json.loads(m.group())
    except json.JSONDecodeError as e:
        return None, f"judge reply is not valid JSON ({e.msg})"
    return (data, "") if isinstance(data, dict) else (None, "judge reply is not a JSON object")


def parse_winner(text: str) -> tuple[str | None, str]:
    data, error = _json_object(text)
    if data is None:
        return None, error
    winner = data.get("winner")
    return (winner, "") if winner in ("A", "B", "tie") else (None, "judge JSON needs `winner`: A, B or tie")


def parse_rubric(text: str) -> tuple[dict | None, str]:
    data, error = _json_object(text)
    if data is None:
        return None, error
    score, passed = data.get("score"), data.get("pass")
    if not isinstance(passed, bool) or isinstance(score, bool) or not isinstance(score, (int, float)) or not 0 <= score <= 1:
        return None, "judge JSON needs `pass` (true/false) and `score` (0..1)"
    return {"pass": passed, "score": float(score), "reason": str(data.get("reason", ""))}, ""


def _similarity(a: str, b: str) -> float:
    from gateway.models import embedder

    v = embedder.encode([a, b])
    return float(v[0] @ v[1])


def _is_json(name: str, text: str, schema: dict | None) -> Outcome:
    body = text.strip()
    if body.startswith("```"):
        body = re.sub(r"^```(?:json)?\s*|\s*```$", "", body)
    try:
        data = json.loads(body)
    except json.JSONDecodeError as e:
        return Outcome(name, False, reason=f"not JSON: {e.msg}")
    if schema is None:
        return Outcome(name, True)
    import jsonschema

    try:
        jsonschema.validate(data, schema)
    except jsonschema.ValidationError as e:
        where = "$" + "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in e.absolute_path)
        return Outcome(name, False, reason=f"{where}: {e.message}"[:300])
    return Outcome(name, True)
