"""The web page in a real headless Chromium (Debian's package, driven by Playwright), on a real server.

What it checks, as a user would do it: enter the API key; create a gallery and enrol a person from an
uploaded photo; upload images (and a video), pick galleries and options, start a job and watch the progress
bar; browse the results (thumbnails with boxes drawn, person, similarity, time and timecode, top-k); run
the pairs job on an uploaded archive and download its result. A screenshot is saved (set
``FACEPRINT_SCREENSHOT_DIR`` to keep it).
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from faceprint.analyze import Analyzer
from faceprint.jobs.store import SqliteJobStore
from faceprint.jobs.video import video_available
from faceprint.jobs.worker import JobWorker, WorkerConfig
from faceprint.server.app import create_app
from faceprint.server.settings import ServerSettings
from faceprint.testing import fake_pipeline_factory, make_face_png, make_two_face_png

from .conftest import BLUE, FAKE, KEY, RED
from .procs import free_port

CHROMIUM = Path("/usr/lib/chromium/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian's chromium is not installed (scripts/test.sh installs it with apt-get where apt exists)",
    ),
    pytest.mark.slow,
]


@pytest.fixture
def service(settings: ServerSettings) -> Iterator[str]:
    """A real server plus one worker thread (as `faceprint serve` runs with its worker processes)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    while not server.started:
        time.sleep(0.05)
    stop = threading.Event()

    def work() -> None:
        with (
            SqliteJobStore(settings.layout.jobs_db) as store,
            Analyzer(workers=1, executor="local", pipeline_factory=fake_pipeline_factory) as analyzer,
        ):
            JobWorker(
                store,
                settings.layout,
                analyzer,
                config=WorkerConfig(lease_s=10, heartbeat_s=0.2, poll_s=0.1),
                pipeline_factory_ref=FAKE,
            ).run_forever(stop)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    yield f"http://127.0.0.1:{port}"
    stop.set()
    worker.join(timeout=30)
    server.should_exit = True
    serving.join(timeout=10)


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


def _files(folder: Path) -> dict[str, Path]:
    folder.mkdir()
    paths = {
        "ruby.png": make_face_png(RED),
        "ruby-again.png": make_face_png((195, 22, 22), size_wh=(48, 48)),
        "group.png": make_two_face_png(RED, BLUE),
    }
    out = {name: folder / name for name in paths}
    for name, data in paths.items():
        out[name].write_bytes(data)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in {**paths, "pairs.csv": b"ruby.png,ruby-again.png\nruby.png,group.png\n"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out["dataset.tar"] = folder / "dataset.tar"
    out["dataset.tar"].write_bytes(buffer.getvalue())
    if video_available():
        import numpy as np

        from faceprint.video.synthetic import SceneFace, render_scene, write_video

        face = np.zeros((40, 40, 3), np.uint8)
        face[:] = RED
        scene = [SceneFace(face, start_frame=0, end_frame=19, start_xy=(8, 8), end_xy=(30, 8), height_px=40)]
        out["clip.mp4"] = folder / "clip.mp4"
        write_video(out["clip.mp4"], render_scene((96, 64), 20, scene), fps=Fraction(10))
    return out


def _canvas_has_box(page: Any, index: int) -> bool:
    """True when the result's canvas shows the photo with the yellow box drawn on it."""
    return bool(
        page.evaluate(
            """(i) => {
            const canvas = document.querySelectorAll('#results canvas')[i];
            if (!canvas || !canvas.width) return false;
            const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
            for (let p = 0; p < data.length; p += 4) {
                if (data[p] > 240 && data[p + 1] > 200 && data[p + 2] < 40) return true;
            }
            return false;
        }""",
            index,
        )
    )


def test_the_page_does_what_a_user_needs(service: str, browser: Any, tmp_path: Path) -> None:
    files = _files(tmp_path / "files")
    page = browser.new_page(viewport={"width": 1280, "height": 1100}, accept_downloads=True)
    page.set_default_timeout(90_000)  # a loaded 2-core CI machine; nothing here is a speed assertion
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    external: list[str] = []
    page.on(
        "request",
        lambda request: (
            external.append(request.url) if not request.url.startswith((service, "data:", "blob:")) else None
        ),
    )
    page.goto(service + "/")

    # A wrong key is refused, the right one accepted.
    page.fill("#api-key", "wrong")
    page.click("#save-key")
    page.wait_for_selector("#key-status.bad")
    page.fill("#api-key", KEY)
    page.click("#save-key")
    page.wait_for_selector("#key-status.ok")

    # Create a gallery and enrol a person by uploading photos.
    page.fill("#gallery-name", "staff")
    page.click("#create-gallery")
    page.wait_for_selector("#gallery-list li")
    page.select_option("#enroll-gallery", "staff")
    page.fill("#person-name", "Ruby")
    page.set_input_files("#enroll-files", [str(files["ruby.png"]), str(files["group.png"])])
    page.click("#enroll")
    page.wait_for_function("document.querySelector('#enroll-status').textContent.includes('enrolled')")
    status = page.text_content("#enroll-status") or ""
    assert "enrolled 1 photo" in status and "group.png: several_faces" in status
    page.wait_for_function("document.querySelector('#gallery-list').textContent.includes('staff: 1 person,')")

    # Upload images (and a video), pick the gallery and options, start the job, watch it finish.
    media = [str(files["ruby-again.png"]), str(files["group.png"])]
    if "clip.mp4" in files:
        media.append(str(files["clip.mp4"]))
    page.set_input_files("#media-files", media)
    assert page.is_checked("#job-galleries input[value=staff]")
    page.fill("#top-k", "2")
    page.click("#start-job")
    page.wait_for_function("document.querySelector('#job-state').textContent.startsWith('completed')", timeout=60_000)
    assert page.evaluate("document.querySelector('#job-progress').value") == 1
    page.wait_for_selector("#results .card")
    cards = page.query_selector_all("#results .card")
    assert len(cards) >= 3
    people = [c.query_selector(".person").text_content() for c in cards]  # type: ignore[union-attr]
    assert people.count("Ruby") >= 2 and "unknown" in people
    images = [i for i, c in enumerate(cards) if c.get_attribute("data-media") == "image"]
    assert all(_canvas_has_box(page, i) for i in images)
    assert "similarity 0." in (cards[0].text_content() or "") or "similarity 1." in (cards[0].text_content() or "")
    assert page.query_selector("#results .card .topk li") is not None
    if "clip.mp4" in files:
        video_cards = [c for c in cards if c.get_attribute("data-media") == "video"]
        assert video_cards and "00:00:0" in (video_cards[0].query_selector(".time").text_content() or "")  # type: ignore[union-attr]
    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    # Run the pairs job on an uploaded archive and download its result.
    page.set_input_files("#pairs-files", [str(files["dataset.tar"])])
    page.click("#start-pairs")
    page.wait_for_selector("#pairs-download:not([hidden])", timeout=60_000)
    assert "2/2 pairs scored" in (page.text_content("#pairs-summary") or "")
    with page.expect_download() as download_info:
        page.click("#pairs-download")
    downloaded = Path(download_info.value.path())
    with tarfile.open(downloaded) as tar:
        assert any(name.endswith("output.csv") for name in tar.getnames())
    page.screenshot(path=str(shot), full_page=True)
    keep = os.environ.get("FACEPRINT_SCREENSHOT_DIR")
    if keep:
        shutil.copy(shot, Path(keep) / "faceprint-page.png")
    assert errors == [] and external == []  # no script error, nothing fetched from outside the server
