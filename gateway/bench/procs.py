"""Child processes for the benchmark, and what /proc says about them (CPU time, RSS)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path


_TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(args: list[str], log: Path, cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=cwd)


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 30) -> float:
    """Seconds until `url` answers 200."""
    import httpx

    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.01)
    raise TimeoutError(f"{url} not ready after {timeout}s")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def spawn_mock(work: Path, children: list) -> str:
    """`gateway mock-server` on a free port; returns its base URL once it answers."""
    port = free_port()
    children.append(spawn(["-m", "gateway", "mock-server", "--port", str(port)], work / "mock.log"))
    wait_ready(f"http://127.0.0.1:{port}/mock/stats", children[-1])
    return f"http://127.0.0.1:{port}"


def spawn_gateways(work: Path, gateway_yaml: str, policies: dict[str, str], children: list
                   ) -> tuple[dict[str, str], dict[str, float], dict[str, int]]:
    """One `gateway serve` per named policy (open mode on policy `bench`), each with `gateway_yaml`.
    Returns base URLs, seconds until /readyz (model load and warm-up included) and pids."""
    urls, ready, pids = {}, {}, {}
    for name, policy in policies.items():
        pol = work / name / "policies"
        pol.mkdir(parents=True)
        (pol / "gateway.yaml").write_text(gateway_yaml)
        (pol / "bench.yaml").write_text(policy)
        port = free_port()
        proc = spawn(["-m", "gateway", "serve", "--policies", str(pol), "--port", str(port),
                      "--state-dir", str(work / name / "state"), "--log-level", "warning"], work / f"{name}.log", cwd=work)
        children.append(proc)
        urls[name], pids[name] = f"http://127.0.0.1:{port}", proc.pid
        ready[name] = round(wait_ready(urls[name] + "/readyz", proc, timeout=120), 2)
    return urls, ready, pids
