"""The job service against the CLI in the same run: API overhead of a pairs job and a video job, and /compare.

Runs, on 127.0.0.1 with the real models:

* a pairs job of N LFW View 1 DevTest pairs (one TAR): ``faceprint pairs`` as a fresh process (the
  baseline) vs the same dataset uploaded, run by a ``faceprint serve`` worker, polled and downloaded
  (both times include model loading: the CLI loads at start-up, ``face_pairs`` jobs load in their child
  process); the two TAR.GZ are checked byte-identical;
* a video job on the 9 s Hamilton clip: ``faceprint video`` vs upload + job + poll + read all pages
  (the API's worker keeps its engine between jobs, so the job is run twice and the second is reported too);
* ``POST /api/v1/compare`` on two uploaded photos: requests/s and p50/p99 latency at concurrency 1, 4 and
  16 (a bounded number of requests per level), beside the same comparison called in-process on the library.

Prints each figure beside its baseline and the server's peak RSS. Needs ../shared/data.

    python benchmarks/service.py [--data ../shared/data] [--pairs 200] [--requests 48]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "from faceprint.cli.main import run; run()"]


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _lfw_dataset(data: Path, pairs: int, out: Path) -> Path:
    lines = (data / "lfw-view1" / "pairsDevTest.txt").read_text().splitlines()[1:]
    rows: list[tuple[str, str]] = []
    for line in lines[:pairs]:
        parts = line.split("\t")
        if len(parts) == 3:
            a, b = f"{parts[0]}/{parts[0]}_{int(parts[1]):04d}.jpg", f"{parts[0]}/{parts[0]}_{int(parts[2]):04d}.jpg"
        else:
            a, b = f"{parts[0]}/{parts[0]}_{int(parts[1]):04d}.jpg", f"{parts[2]}/{parts[2]}_{int(parts[3]):04d}.jpg"
        rows.append((a, b))
    with tarfile.open(out, "w") as tar:
        for name in sorted({n for row in rows for n in row}):
            tar.add(data / "lfw-view1" / "images" / name, arcname=name)
        csv = "".join(f"{a},{b}\n" for a, b in rows).encode()
        info = tarfile.TarInfo("pairs.csv")
        info.size = len(csv)
        tar.addfile(info, io.BytesIO(csv))
    return out


def _peak_rss_mib(pid: int) -> float:
    total = 0.0
    for proc in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{proc}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024
        except FileNotFoundError:
            pass
    return total


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


class Service:
    def __init__(self, data_dir: Path) -> None:
        self.key = secrets.token_urlsafe(16)
        self.port = _port()
        env = {**os.environ, "FACEPRINT_API_KEYS": self.key}
        self.process = subprocess.Popen(
            [*CLI, "serve", "--port", str(self.port), "--data-dir", str(data_dir), "--workers", "1"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.client = httpx.Client(base_url=self.url, headers=self.headers, timeout=300)
        deadline = time.monotonic() + 120
        while True:
            try:
                if self.client.get("/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server did not start")
            time.sleep(0.2)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Key {self.key}"}

    def upload(self, path: Path) -> str:
        response = self.client.post("/api/v1/storage/", files={"file": (path.name, path.read_bytes())})
        response.raise_for_status()
        uri: str = response.json()["uri"]
        return uri

    def run_job(self, sources: list[str], modules: dict[str, Any]) -> dict[str, Any]:
        job = self.client.post("/api/v1/jobs/", json={"sources": sources, "modules": modules}).json()
        while True:
            state: dict[str, Any] = self.client.get(f"/api/v1/jobs/{job['id']}/").json()
            if state["state"] in ("completed", "failed", "cancelled"):
                return state
            time.sleep(0.1)

    def close(self) -> None:
        self.client.close()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def bench_pairs(service: Service, dataset: Path, work: Path) -> None:
    out = work / "cli.tar.gz"
    start = time.perf_counter()
    subprocess.run([*CLI, "pairs", str(dataset), "-o", str(out), "--workers", "1", "--quiet"], check=False)
    cli_s = time.perf_counter() - start
    start = time.perf_counter()
    uri = service.upload(dataset)
    job = service.run_job([uri], {"face_pairs": {}})
    result = service.client.get(f"/api/v1/jobs/{job['id']}/result").content
    api_s = time.perf_counter() - start
    identical = result == out.read_bytes()
    print(f"pairs job ({dataset.stat().st_size / 1e6:.1f} MB TAR): CLI {cli_s:.2f} s | API {api_s:.2f} s "
          f"(upload+job+download; job {job['duration']:.2f} s) | overhead {100 * (api_s / cli_s - 1):+.1f}% "
          f"| byte-identical: {identical}")


def bench_video(service: Service, clip: Path, work: Path) -> None:
    out = work / "video.json"
    start = time.perf_counter()
    subprocess.run([*CLI, "video", str(clip), "-o", str(out), "--workers", "1"], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cli_s = time.perf_counter() - start
    times = []
    for _ in range(2):
        start = time.perf_counter()
        uri = service.upload(clip)
        job = service.run_job([uri], {"face_recognition": {}})
        url: str | None = f"/api/v1/jobs/{job['id']}/detailed-results/?limit=100"
        segments = 0
        while url is not None:
            page = service.client.get(url).json()
            segments += len(page["data"])
            url = page["next"]
        times.append(time.perf_counter() - start)
    print(f"video job ({clip.name}): CLI {cli_s:.2f} s | API first {times[0]:.2f} s "
          f"({100 * (times[0] / cli_s - 1):+.1f}%), second {times[1]:.2f} s ({100 * (times[1] / cli_s - 1):+.1f}%) "
          f"| {segments} segments, state {job['state']}")


async def _compare_level(service: Service, a: str, b: str, concurrency: int, requests: int) -> list[float]:
    latencies: list[float] = []
    queue = list(range(requests))
    async with httpx.AsyncClient(base_url=service.url, headers=service.headers, timeout=120) as client:

        async def runner() -> None:
            while queue:
                queue.pop()
                start = time.perf_counter()
                response = await client.post("/api/v1/compare", json={"a": a, "b": b})
                response.raise_for_status()
                latencies.append(time.perf_counter() - start)

        await asyncio.gather(*(runner() for _ in range(concurrency)))
    return latencies


def bench_compare(service: Service, photo_a: Path, photo_b: Path, requests: int) -> None:
    from faceprint.analyze import Analyzer
    from faceprint.verify import compare_inputs

    with Analyzer(workers=1, executor="local") as analyzer:
        compare_inputs(analyzer, photo_a, photo_b)
        library = []
        for _ in range(min(requests, 16)):
            start = time.perf_counter()
            compare_inputs(analyzer, photo_a, photo_b)
            library.append(time.perf_counter() - start)
    a, b = service.upload(photo_a), service.upload(photo_b)
    asyncio.run(_compare_level(service, a, b, 1, 2))  # warm-up
    print(f"/compare baseline (library in-process, sequential): p50 {1000 * statistics.median(library):.0f} ms, "
          f"{1 / statistics.mean(library):.1f} calls/s")
    for concurrency in (1, 4, 16):
        count = max(requests, concurrency * 3)
        start = time.perf_counter()
        latencies = sorted(asyncio.run(_compare_level(service, a, b, concurrency, count)))
        wall = time.perf_counter() - start
        p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
        print(f"/compare concurrency {concurrency:2d}: {count / wall:6.1f} req/s | p50 "
              f"{1000 * statistics.median(latencies):6.0f} ms | p99 {1000 * p99:6.0f} ms ({count} requests)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--requests", type=int, default=48)
    args = parser.parse_args()
    examples = args.data / "faces-small" / "face_recognition" / "examples"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        dataset = _lfw_dataset(args.data, args.pairs, work / "lfw-devtest.tar")
        service = Service(work / "data")
        try:
            bench_pairs(service, dataset, work)
            bench_video(service, examples / "short_hamilton_clip.mp4", work)
            bench_compare(service, examples / "obama.jpg", examples / "obama2.jpg", args.requests)
            print(f"server + worker peak RSS: {_peak_rss_mib(service.process.pid):.0f} MiB")
        finally:
            service.close()


if __name__ == "__main__":
    main()
