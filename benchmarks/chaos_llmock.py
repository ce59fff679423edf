"""The gateway as the client of a chaos upstream written by others: llmock 0.2.2 (PyPI), which injects
HTTP errors, rate limits and stream faults and then judges how its client reacted.

    python benchmarks/chaos_llmock.py [--requests 300] [--venv /tmp/llmock-venv]

Installs llmock in its own venv (it pins FastAPI/uvicorn versions of its own), starts it with the
issue #19 fault mix, points a gateway (`gateway serve`, default routing: retries with backoff,
Retry-After honoured, streams held until content and resumed by replay) at it, sends a mix of
streamed and non-streamed chat completions, and prints llmock's own verdict on the gateway.
Exit 0 when the verdict is PASS (no errors; `--strict`: no warnings either). It also checks, from
the client side, that every streamed answer either completed or ended with an error event.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
FAULTS = ["--error-rate", "429=0.08", "--error-rate", "500=0.05", "--error-rate", "503=0.05",
          "--stream-fault", "disconnect=0.05", "--stream-fault", "truncate=0.08",
          "--stream-fault", "stall=0.03", "--stream-fault", "malformed=0.05",
          "--stream-stall-seconds", "4", "--rpm", "400", "--response-style", "varied"]


def ensure_llmock(venv: Path) -> Path:
    exe = venv / "bin" / "llmock"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "llmock==0.2.2"], check=True)
    return exe


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def one(gateway: str, i: int) -> dict:
    stream = i % 2 == 0
    body = {"model": "chaos", "messages": [{"role": "user", "content": f"Question {i}: tell me about rivers."}],
            "max_tokens": 60, "stream": stream}
    try:
        if not stream:
            r = httpx.post(gateway + "/v1/chat/completions", json=body, timeout=60)
            return {"stream": False, "status": r.status_code}
        with httpx.stream("POST", gateway + "/v1/chat/completions", json=body, timeout=60) as r:
            done = errored = finished = False
            for line in r.iter_lines():
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: "):
                    event = json.loads(line[6:])
                    errored |= "error" in event
                    finished |= any(c.get("finish_reason") for c in event.get("choices") or ())
            return {"stream": True, "status": r.status_code, "done": done, "finished": finished, "errored": errored}
    except httpx.HTTPError as e:
        return {"stream": stream, "status": -1, "exc": type(e).__name__}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--venv", default="/tmp/llmock-venv", help="where llmock is (or gets) installed")
    p.add_argument("--strict", action="store_true", help="fail on llmock's warnings too")
    args = p.parse_args()

    exe = ensure_llmock(Path(args.venv))
    work = Path(tempfile.mkdtemp(prefix="chaos-"))
    mock_port, gw_port = free_port(), free_port()
    mock = subprocess.Popen([str(exe), "serve", "--port", str(mock_port), "--log-level", "warning", *FAULTS],
                            stdout=(work / "llmock.log").open("w"), stderr=subprocess.STDOUT)
    policies = work / "policies"
    policies.mkdir()
    (policies / "gateway.yaml").write_text(textwrap.dedent(f"""
        upstreams:
          llmock:
            type: openai
            base_url: http://127.0.0.1:{mock_port}/v1
            api_key_env: CHAOS_KEY
            timeouts: {{connect_s: 2, read_s: 1.5}}
        models:
          chaos:
            targets: [{{upstream: llmock, model: gpt-4o-mini}}]
            retries: 4
            backoff: {{base_s: 0.2, max_s: 2, max_retry_after_s: 30}}
            timeout_s: 60
        server: {{watch_interval_s: 0}}
        """))
    (policies / "default.yaml").write_text("request: []\nresponse: []\n")
    gw = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--policies", str(policies), "--port", str(gw_port),
                           "--state-dir", str(work / "state"), "--log-level", "warning"],
                          cwd=ROOT, env={**os.environ, "CHAOS_KEY": "sk-chaos-test"},
                          stdout=(work / "gateway.log").open("w"), stderr=subprocess.STDOUT)
    try:
        wait(f"http://127.0.0.1:{mock_port}/_llmock/requests", mock)
        gateway = f"http://127.0.0.1:{gw_port}"
        wait(gateway + "/healthz", gw)
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
            results = list(pool.map(lambda i: one(gateway, i), range(args.requests)))
        elapsed = time.monotonic() - t0
        report = subprocess.run([str(exe), "report", "--url", f"http://127.0.0.1:{mock_port}"]
                                + (["--strict"] if args.strict else []), capture_output=True, text=True)
        (work / "llmock-requests.json").write_text(httpx.get(f"http://127.0.0.1:{mock_port}/_llmock/requests").text)
        verdict = json.loads(subprocess.run([str(exe), "report", "--url", f"http://127.0.0.1:{mock_port}", "--json"],
                                            capture_output=True, text=True).stdout or "{}")
    finally:
        for proc in (gw, mock):
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()

    streams = [r for r in results if r["stream"]]
    silent = [r for r in streams if r.get("status") == 200 and not r.get("finished") and not r.get("errored")]
    ok = sum(1 for r in results if r["status"] == 200 and not r.get("errored"))
    print(f"{args.requests} requests through the gateway in {elapsed:.1f} s: {ok} answered in full, "
          f"{sum(1 for r in results if r['status'] not in (200,))} refused or failed with a status, "
          f"{sum(1 for r in streams if r.get('errored'))} streams ended with an error event, "
          f"{len(silent)} streams ended silently truncated")
    print(f"llmock: {verdict.get('calls')} calls, {verdict.get('attempts')} attempts, "
          f"{verdict.get('faults_injected')} faults injected, {verdict.get('errors')} errors, "
          f"{verdict.get('warnings')} warnings")
    print(report.stdout.strip())
    print(f"logs and llmock's request journal: {work}")
    return 0 if report.returncode == 0 and not silent else 1


if __name__ == "__main__":
    sys.exit(main())
