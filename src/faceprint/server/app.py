"""The app factory: ``create_app(settings)`` builds the stores and the engine in its lifespan (no module globals).

Jobs are queued in the job store and run by worker processes (``faceprint worker``, or those ``faceprint
serve`` starts), never in a request handler. The engine built here serves the synchronous calls only
(compare, detect, enrolment).

Example:
    >>> app = create_app(ServerSettings(data_dir=Path("/tmp/fp"), api_keys="k"))  # doctest: +SKIP
    >>> uvicorn.run(app)                                                          # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from faceprint import __version__
from faceprint.analyze import Analyzer
from faceprint.jobs.pairs import load_factory
from faceprint.jobs.uploads import UploadStore
from faceprint.server.deps import require_key
from faceprint.server.errors import install_error_handlers
from faceprint.server.keys import KeyStore
from faceprint.server.routes import compare, health, index, jobs, models, storage
from faceprint.server.service import Service
from faceprint.server.settings import ServerSettings

__all__ = ["create_app", "static_dir"]


def static_dir() -> Path:
    """The web page's files (package data)."""
    return Path(str(resources.files("faceprint.server") / "static"))


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    """The FastAPI app; ``settings`` default to the ``FACEPRINT_*`` environment, read now, not at import."""
    settings = settings if settings is not None else ServerSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        layout = settings.layout
        layout.root.mkdir(parents=True, exist_ok=True)
        cipher = settings.cipher()  # a bad key fails the start, not the first request
        store = settings.open_job_store()
        analyzer = Analyzer(workers=1, executor="local", pipeline_factory=load_factory(settings.pipeline_factory))
        try:
            with analyzer:
                app.state.service = Service(
                    settings=settings,
                    layout=layout,
                    store=store,
                    uploads=UploadStore(layout.uploads_dir, cipher=cipher),
                    keys=KeyStore(layout.keys_file),
                    analyzer=analyzer,
                    env_keys=settings.api_key_list,
                    cipher=cipher,
                )
                yield
        finally:
            store.close()

    app = FastAPI(
        title="faceprint",
        version=__version__,
        description="Face recognition jobs (DeepVA-compatible), pair datasets, galleries. See docs/service.md.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    api = APIRouter(prefix="/api/v1", dependencies=[Depends(require_key)])
    for module in (storage, jobs, models, index, compare):
        api.include_router(module.router)
    app.include_router(api)
    app.include_router(health.router)
    static = static_dir()
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(static / "index.html", media_type="text/html")

    return app
