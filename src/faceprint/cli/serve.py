"""``faceprint serve`` (the HTTP API and its worker processes) and ``faceprint worker`` (one worker).

Register them with ``app.command(name="serve")(serve)`` and ``app.command(name="worker")(worker)``.

Example:
    $ FACEPRINT_API_KEYS=secret faceprint serve --data-dir /srv/faceprint --workers 2
    $ faceprint worker --data-dir /srv/faceprint
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Annotated

import typer

from faceprint.cli.common import ConfidentialOption, handle_errors, stderr, use_confidential

DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Jobs, uploads, galleries, results and keys (default: FACEPRINT_DATA_DIR)."),
]


@handle_errors
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8000,
    data_dir: DataDirOption = None,
    workers: Annotated[
        int, typer.Option("--workers", min=0, max=64, help="Worker processes to start (0: run them yourself).")
    ] = 1,
    confidential: ConfidentialOption = False,
) -> None:
    """Serve the job API and the web page; jobs run in worker processes, never in the server."""
    import uvicorn

    from faceprint.server.app import create_app
    from faceprint.server.settings import ServerSettings
    from faceprint.server.supervisor import WorkerSupervisor

    core = use_confidential(confidential)  # the workers started below inherit FACEPRINT_CONFIDENTIAL
    settings = ServerSettings(data_dir=data_dir, confidential=core.confidential or None)
    settings.layout.root.mkdir(parents=True, exist_ok=True)
    if not settings.api_key_list and not settings.layout.keys_file.exists():
        stderr().print(
            "[yellow]warning[/] no API key configured: every API call will be refused (401). "
            "Set FACEPRINT_API_KEYS or run: faceprint keys create NAME"
        )
    # uvicorn.Config sets up uvicorn's logging; the scrubbing goes on after it, so its handlers get the filter.
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host=host, port=port, log_level="info"))
    if settings.confidential:
        from faceprint.logs import install_confidential_logging

        install_confidential_logging()
    supervisor = WorkerSupervisor(settings.data_dir, workers)
    supervisor.start()
    try:
        server.run()
    except KeyboardInterrupt:  # as uvicorn.run(): Ctrl-C is a normal stop
        pass
    finally:
        supervisor.stop()
    if not server.started:
        raise typer.Exit(code=3)  # uvicorn.run()'s STARTUP_FAILURE: the port could not be bound


@handle_errors
def worker(data_dir: DataDirOption = None, confidential: ConfidentialOption = False) -> None:
    """Run one job worker: claims jobs from the data dir's queue and runs them on one long-lived engine."""
    from faceprint.analyze import Analyzer
    from faceprint.jobs.pairs import load_factory
    from faceprint.jobs.worker import JobWorker
    from faceprint.server.settings import ServerSettings

    core = use_confidential(confidential)  # the engine's worker processes inherit FACEPRINT_CONFIDENTIAL
    settings = ServerSettings(data_dir=data_dir, confidential=core.confidential or None)
    if settings.confidential:
        from faceprint.logs import install_confidential_logging

        install_confidential_logging()
    layout = settings.layout
    config = settings.worker_config
    factory = load_factory(settings.pipeline_factory)
    stop = threading.Event()
    store = settings.open_job_store()
    with (
        contextlib.closing(store),
        Analyzer(workers=config.engine_workers, pipeline_factory=factory) as analyzer,
    ):
        job_worker = JobWorker(
            store,
            layout,
            analyzer,
            config=config,
            pipeline_factory_ref=settings.pipeline_factory,
            cipher=settings.cipher(),
        )
        stderr().print(f"worker {job_worker.worker_id} on {layout.root}", markup=False)
        job_worker.run_forever(stop)
