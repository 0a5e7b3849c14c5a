"""A video job through the API: DeepVA segments from the video pipeline, read page by page (fake engine)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from faceprint.jobs.video import video_available

from .conftest import Runner, upload

pytestmark = pytest.mark.skipif(
    not video_available(), reason="the video pipeline (PyAV, faceprint.video.engine) is not installed"
)


def _clip(path: Path) -> bytes:
    from faceprint.video.synthetic import SceneFace, render_scene, write_video

    face = np.zeros((40, 40, 3), np.uint8)
    face[:] = (200, 20, 20)
    scene = [SceneFace(face, start_frame=0, end_frame=19, start_xy=(8, 8), end_xy=(30, 8), height_px=40)]
    write_video(path, render_scene((96, 64), 20, scene), fps=Fraction(10))
    return path.read_bytes()


def test_video_job_gives_deepva_segments(client: TestClient, runner: Runner, tmp_path: Path) -> None:
    video = upload(client, _clip(tmp_path / "clip.mp4"), "clip.mp4")
    assert video["media_type"] == "video"
    job = client.post(
        "/api/v1/jobs/", json={"sources": [video["uri"]], "modules": {"face_recognition": {"enable_top_k": True}}}
    ).json()
    assert job["media_type"] == "video"
    assert runner.run_all() == 1
    done = client.get(f"/api/v1/jobs/{job['id']}").json()
    assert done["state"] == "completed" and done["errors"] == [], done
    summary = done["result"]["summary"][0]
    assert summary["source"] == video["uri"] and summary["info"]["total_frames"] == 20
    page = client.get(f"/api/v1/jobs/{job['id']}/detailed-results/").json()
    assert page["total"] >= 1
    segment = page["data"][0]
    assert segment["media_type"] == "video" and segment["source"] == video["uri"]  # never the server's path
    assert {"frame_start", "frame_end", "time_start", "time_end", "tc_start", "tc_end", "detections"} <= set(segment)
    assert segment["tc_start"].count(":") == 3


def test_video_limits_are_that_sources_error(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient as Client

    from faceprint.server.app import create_app
    from faceprint.server.settings import ServerSettings

    from .conftest import FAKE, KEY

    for limits, code in [({"max_video_duration_s": 1.0}, "video_too_long"), ({"max_video_side_px": 64}, None)]:
        settings = ServerSettings(data_dir=tmp_path / code_dir(limits), api_keys=KEY, pipeline_factory=FAKE, **limits)
        with Client(create_app(settings), headers={"Authorization": f"Key {KEY}"}) as client:
            video = upload(client, _clip(tmp_path / f"{code_dir(limits)}.mp4"), "clip.mp4")
            job = client.post("/api/v1/jobs/", json={"sources": [video["uri"]], "modules": {"face_recognition": {}}})
            Runner(settings).run_all()
            done = client.get(f"/api/v1/jobs/{job.json()['id']}").json()
            assert done["state"] == "completed" and len(done["errors"]) == 1, done
            if code is not None:
                assert done["errors"][0]["code"] == code
            assert client.get(f"/api/v1/jobs/{job.json()['id']}/detailed-results/").json()["total"] == 0


def code_dir(limits: dict[str, float]) -> str:
    return "-".join(limits)
