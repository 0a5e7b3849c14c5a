"""JobWorker on the fake pipeline: face_recognition jobs end to end through the store, resumption, cancel."""

from __future__ import annotations

import threading
from pathlib import Path

from faceprint.analyze import Analyzer
from faceprint.jobs.context import JobContext, JobOutcome
from faceprint.jobs.layout import DataLayout
from faceprint.jobs.model import JobState, NewJob
from faceprint.jobs.recognition import CHUNK_IMAGES
from faceprint.jobs.store import SqliteJobStore
from faceprint.jobs.worker import JobWorker, WorkerConfig
from faceprint.testing import make_face_png, make_two_face_png

from .conftest import BLUE, GREEN, RED, upload


def _worker(job_store: SqliteJobStore, layout: DataLayout, analyzer: Analyzer, **kwargs: object) -> JobWorker:
    return JobWorker(job_store, layout, analyzer, config=WorkerConfig(lease_s=10, heartbeat_s=0.2), **kwargs)  # type: ignore[arg-type]


def test_image_job_identifies_every_face_with_its_box(
    job_store: SqliteJobStore, layout: DataLayout, analyzer: Analyzer, staff: str
) -> None:
    ruby = upload(layout, make_face_png(RED))
    pair = upload(layout, make_two_face_png(RED, BLUE), "two.png")
    broken = upload(layout, b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "broken.png")
    job = job_store.create(
        NewJob("face_recognition", (ruby.uri, pair.uri, broken.uri), {"model": staff, "enable_top_k": True, "top_k": 2})
    )
    assert _worker(job_store, layout, analyzer).run_once()
    done = job_store.get(job.id)
    assert done.state is JobState.COMPLETED and done.progress == 1.0
    items = job_store.items(job.id, offset=0, limit=100).rows
    assert [i.data["source"] for i in items] == [ruby.uri, pair.uri, pair.uri]
    assert items[0].data["meta"]["person"] == "Ruby"
    assert sorted(i.data["meta"]["person"] for i in items[1:]) == ["Ruby", "unknown"]
    first = items[0].data
    assert first["media_type"] == "image" and first["module"] == "face_recognition"
    box = first["detections"][0]
    assert box["type"] == "face_bbox" and 0 < box["data"]["w"] <= 1 and 0 < box["data"]["h"] <= 1
    assert first["meta"]["closest_k_persons"][0]["person"] == "Ruby"
    assert [e.code for e in done.errors] == ["decode_error"] and done.errors[0].source == broken.uri
    by_source = {entry["source"]: entry for entry in done.summary}
    assert sorted(i["label"] for i in by_source[pair.uri]["items"]) == ["Ruby", "unknown"]
    assert by_source[broken.uri]["processing"]["error"]["code"] == "decode_error"


def test_missing_gallery_fails_the_job_with_its_code(
    job_store: SqliteJobStore, layout: DataLayout, analyzer: Analyzer
) -> None:
    ruby = upload(layout, make_face_png(RED))
    job = job_store.create(NewJob("face_recognition", (ruby.uri,), {"model": "nobody"}))
    _worker(job_store, layout, analyzer).run_once()
    failed = job_store.get(job.id)
    assert failed.state is JobState.FAILED and [e.code for e in failed.errors] == ["gallery_not_found"]


def test_a_re_leased_job_resumes_after_its_done_chunks_and_writes_nothing_twice(
    job_store: SqliteJobStore, layout: DataLayout, analyzer: Analyzer, staff: str, tmp_path: Path
) -> None:
    sources = tuple(upload(layout, make_face_png(RED if i % 2 else GREEN)).uri for i in range(CHUNK_IMAGES * 2 + 3))
    job = job_store.create(NewJob("face_recognition", sources, {"model": staff}))
    killed = job_store.claim("killed", lease_s=0.01)  # a worker that dies after its first chunk
    assert killed is not None
    from faceprint.jobs.context import ProgressCell
    from faceprint.jobs.recognition import run_face_recognition
    from faceprint.jobs.uploads import UploadStore

    class StopAfterFirstChunk(Exception):
        pass

    class OneChunkStore:
        def __init__(self) -> None:
            self.calls = 0

        def __getattr__(self, name: str) -> object:
            return getattr(job_store, name)

        def put_items(self, *args: object, **kwargs: object) -> None:
            job_store.put_items(*args, **kwargs)  # type: ignore[arg-type]
            self.calls += 1
            if self.calls == 1:
                raise StopAfterFirstChunk

    ctx = JobContext(
        job=killed,
        worker_id="killed",
        store=OneChunkStore(),
        layout=layout,  # type: ignore[arg-type]
        uploads=UploadStore(layout.uploads_dir),
        analyzer=analyzer,
        cancel=threading.Event(),
        progress=ProgressCell(),
    )
    try:
        run_face_recognition(ctx)
    except StopAfterFirstChunk:
        pass
    assert job_store.items(job.id, offset=0, limit=1000).total == CHUNK_IMAGES
    import time

    time.sleep(0.05)
    assert _worker(job_store, layout, analyzer).run_once()
    done = job_store.get(job.id)
    assert done.state is JobState.COMPLETED and done.attempts == 2
    items = job_store.items(job.id, offset=0, limit=1000).rows
    assert len(items) == len(sources)
    assert [i.data["source"] for i in items] == list(sources)
    assert [i.data["meta"]["person"] for i in items] == ["Ruby" if i % 2 else "unknown" for i in range(len(sources))]


def test_cancel_stops_a_running_job(job_store: SqliteJobStore, layout: DataLayout, analyzer: Analyzer) -> None:
    started = threading.Event()

    def slow(ctx: JobContext) -> JobOutcome:
        started.set()
        while not ctx.cancel.wait(0.05):
            pass
        return JobOutcome()

    job = job_store.create(NewJob("face_recognition", ("storage://" + "0" * 32,)))
    worker = _worker(job_store, layout, analyzer, runners={"face_recognition": slow})
    thread = threading.Thread(target=worker.run_once)
    thread.start()
    assert started.wait(5)
    job_store.request_cancel(job.id)
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert job_store.get(job.id).state is JobState.CANCELLED


def test_progress_is_written_while_the_job_runs(
    job_store: SqliteJobStore, layout: DataLayout, analyzer: Analyzer
) -> None:
    seen: list[float] = []

    def stepping(ctx: JobContext) -> JobOutcome:
        for step in range(1, 5):
            ctx.progress.set(step / 5)
            # The heartbeat thread writes it while the runner is still busy (generous bound: no speed test).
            for _ in range(200):
                if job_store.get(ctx.job.id).progress >= step / 5:
                    break
                ctx.cancel.wait(0.05)
            seen.append(job_store.get(ctx.job.id).progress)
        return JobOutcome()

    job = job_store.create(NewJob("face_recognition", ("storage://" + "0" * 32,)))
    _worker(job_store, layout, analyzer, runners={"face_recognition": stepping}).run_once()
    assert seen == [0.2, 0.4, 0.6, 0.8]
    assert job_store.get(job.id).progress == 1.0
