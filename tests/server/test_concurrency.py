"""50 concurrent uploads and jobs against a real uvicorn server: nothing lost, nothing mixed up."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from faceprint.server.app import create_app
from faceprint.server.settings import ServerSettings
from faceprint.testing import make_face_png

from .conftest import KEY, Runner
from .procs import free_port

CLIENTS = 50


@pytest.fixture
def served(settings: ServerSettings) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


async def _one(client: httpx.AsyncClient, number: int) -> dict[str, Any]:
    data = make_face_png((number * 5 % 256, 40, 200 - number), size_wh=(32 + number % 5, 32))
    stored = await client.post(
        "/api/v1/storage/", files={"file": (f"{number}.png", data)}, data={"sha256": hashlib.sha256(data).hexdigest()}
    )
    assert stored.status_code == 201, stored.text
    job = await client.post(
        "/api/v1/jobs/",
        json={"sources": [stored.json()["uri"]], "modules": {"face_recognition": {}}, "tag": f"client-{number}"},
    )
    assert job.status_code == 201, job.text
    return {"number": number, "sha256": hashlib.sha256(data).hexdigest(), "upload": stored.json(), "job": job.json()}


async def _all(base: str) -> list[dict[str, Any]]:
    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Key {KEY}"}, limits=limits, timeout=60
    ) as client:
        return list(await asyncio.gather(*(_one(client, n) for n in range(CLIENTS))))


def test_fifty_concurrent_uploads_and_jobs_lose_nothing(served: str, runner: Runner) -> None:
    made = asyncio.run(_all(served))
    assert len({m["upload"]["id"] for m in made}) == CLIENTS and len({m["job"]["id"] for m in made}) == CLIENTS
    assert all(m["upload"]["sha256"] == m["sha256"] for m in made)
    assert runner.run_all() == CLIENTS
    with httpx.Client(base_url=served, headers={"Authorization": f"Key {KEY}"}) as client:
        listed = client.get("/api/v1/jobs/", params={"limit": 1000, "state": "completed"}).json()
        assert listed["total"] == CLIENTS
        for entry in made:
            job = client.get(f"/api/v1/jobs/{entry['job']['id']}").json()
            assert job["tag"] == f"client-{entry['number']}" and job["sources"] == [entry["upload"]["uri"]]
            items = client.get(f"/api/v1/jobs/{entry['job']['id']}/detailed-results/").json()
            assert items["total"] == 1 and items["data"][0]["source"] == entry["upload"]["uri"]
            stored = client.get(f"/api/v1/storage/{entry['upload']['id']}/file").content
            assert hashlib.sha256(stored).hexdigest() == entry["sha256"]
