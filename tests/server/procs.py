"""Real processes for service tests: ``faceprint serve`` and ``faceprint worker`` on a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
KEY = "process-test-key"
CLI = [sys.executable, "-c", "from faceprint.cli.main import run; run()"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def service_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        FACEPRINT_API_KEYS=KEY,
        FACEPRINT_PIPELINE_FACTORY="slow_fake_pipeline:slow_pipeline_factory",
        FACEPRINT_LEASE_S="3",
        FACEPRINT_HEARTBEAT_S="0.5",
        PYTHONPATH=os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]),
    )
    env.update(extra)
    return env


def start_server(
    data_dir: Path, port: int, *, workers: int = 0, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [*CLI, "serve", "--port", str(port), "--data-dir", str(data_dir), "--workers", str(workers)],
        env=service_env(**(env or {})),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: _healthy(port), timeout_s=60, what="server start")
    return process


def start_worker(data_dir: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*CLI, "worker", "--data-dir", str(data_dir)],
        env=service_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for(
    check: Callable[[], Any], *, timeout_s: float, what: str, poll_s: float = 0.1, seen: Callable[[], Any] | None = None
) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out waiting for {what}" + ("" if seen is None else f" (last seen: {seen()})"))


def api(port: int) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Key {KEY}"}, timeout=30)
