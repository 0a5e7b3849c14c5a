"""The ``face_pairs`` job: pair datasets (TAR / TAR.GZ uploads) → :func:`faceprint.batch.pairs.run_pairs_job`.

The result is the TAR.GZ ``faceprint pairs`` writes for the same datasets, byte for byte: each upload is
given to the job under its uploaded file name (a hard link in the job's work folder), since the output
names its inputs.

``run_pairs_job`` builds its own engine and has no cancel hook, so it runs in a child process that the
worker can stop within a heartbeat of a cancel.

Example:
    >>> PairsParams.from_dict({"details": True}).face
    'primary'
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from faceprint.analyze import PipelineFactory, check_face_mode
from faceprint.errors import FaceprintError, UsageError
from faceprint.jobs.context import JobContext, JobOutcome
from faceprint.jobs.model import JobError
from faceprint.jobs.uploads import UnsupportedMediaError, clean_filename

__all__ = ["PairsJobError", "PairsParams", "load_factory", "run_face_pairs"]

_POLL_S = 0.2


@dataclass(frozen=True, slots=True)
class PairsParams:
    """The ``face_pairs`` module's parameters (those of ``faceprint pairs``)."""

    details: bool = False
    face: Literal["primary", "largest", "best-match"] = "primary"

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> PairsParams:
        face = check_face_mode(str(params.get("face", "primary")))
        if face == "all":
            raise UsageError("face_pairs: face must be primary, largest or best-match")
        return cls(details=bool(params.get("details", False)), face=face)


def load_factory(ref: str | None) -> PipelineFactory | None:
    """The pipeline factory named ``module:function`` (None: the real pipeline).

    Example:
        >>> load_factory("faceprint.testing:fake_pipeline_factory").__name__
        'fake_pipeline_factory'
    """
    if ref is None:
        return None
    module_name, _, attr = ref.partition(":")
    factory: PipelineFactory = getattr(importlib.import_module(module_name), attr)
    return factory


def _child(
    inputs: list[str],
    output: str,
    details: bool,
    face: str,
    workers: int,
    max_pairs: int,
    factory_ref: str | None,
    conn: Any,
) -> None:
    from faceprint.batch.pairs import PairsOptions, run_pairs_job

    try:
        mode = PairsParams.from_dict({"face": face}).face
        options = PairsOptions(details=details, face=mode, workers=workers, quiet=True, max_pairs=max_pairs)
        result = run_pairs_job(
            [Path(p) for p in inputs], Path(output), options=options, pipeline_factory=load_factory(factory_ref)
        )
        datasets = [
            {
                "source": d.source,
                "folder": d.folder,
                "rows": d.rows,
                "scored": d.scored,
                "failed": d.failed,
                "status": d.status,
                "dataset_error": d.dataset_error,
            }
            for d in result.datasets
        ]
        conn.send(
            {
                "ok": True,
                "datasets": datasets,
                "model_id": result.model_id,
                "contract_id": result.contract_id,
                "threshold": result.threshold,
            }
        )
    except FaceprintError as err:
        conn.send({"ok": False, "code": err.code, "message": err.message})
    except Exception as err:
        conn.send({"ok": False, "code": "internal_error", "message": f"{type(err).__name__}: {err}"})
    finally:
        conn.close()


class PairsJobError(FaceprintError):
    """The pairs job as a whole failed (its error code is the library's)."""

    code = "pairs_job_error"
    http_status = 422


def run_face_pairs(ctx: JobContext) -> JobOutcome:
    """Run a ``face_pairs`` job (see the module doc)."""
    params = PairsParams.from_dict(ctx.job.params)
    work = ctx.layout.root / "work" / ctx.job.id
    shutil.rmtree(work, ignore_errors=True)  # a killed attempt's leftovers
    inputs: list[str] = []
    used: set[str] = set()
    for number, uri in enumerate(ctx.job.sources, start=1):
        record, path = ctx.uploads.resolve(uri)
        with path.open("rb") as handle:
            head = handle.read(4)
        if record.media_type != "archive" or head.startswith(b"PK"):
            raise UnsupportedMediaError(
                f"{record.filename}: face_pairs takes TAR or TAR.GZ datasets"
                + (" (ZIP is not supported yet)" if head.startswith(b"PK") else ""),
                details={"source": uri},
            )
        name = clean_filename(record.filename)
        if name in used:
            name = f"{number:04d}-{name}"
        used.add(name)
        folder = work / f"{number:04d}"
        folder.mkdir(parents=True)
        target = folder / name
        try:
            os.link(path, target)
        except OSError:
            shutil.copyfile(path, target)
        inputs.append(str(target))
    ctx.layout.results_dir.mkdir(parents=True, exist_ok=True)
    output = ctx.layout.result_path(ctx.job.id)
    mp = multiprocessing.get_context("spawn")
    receiver, sender = mp.Pipe(duplex=False)
    process = mp.Process(
        target=_child,
        args=(
            inputs,
            str(output),
            params.details,
            params.face,
            ctx.engine_workers,
            ctx.limits.max_pairs,
            ctx.pipeline_factory_ref,
            sender,
        ),
        daemon=True,
    )
    process.start()
    sender.close()
    message: dict[str, Any] | None = None
    try:
        while True:
            if ctx.cancel.is_set():
                process.terminate()
                break
            if receiver.poll(_POLL_S):
                try:
                    message = receiver.recv()
                except EOFError:
                    message = None
                break
            if not process.is_alive() and not receiver.poll(0):
                break
    finally:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
            process.join()
        receiver.close()
        shutil.rmtree(work, ignore_errors=True)
    if ctx.cancel.is_set():
        return JobOutcome()
    if message is None:
        raise PairsJobError(f"the pairs process stopped without a result (exit code {process.exitcode})")
    if not message["ok"]:
        raise PairsJobError(str(message["message"]), details={"code": message["code"]})
    summary = []
    errors = []
    for uri, dataset in zip(ctx.job.sources, message["datasets"], strict=True):
        summary.append(
            {
                "source": uri,
                "media_type": "archive",
                "items": [],
                "processing": {
                    **dataset,
                    "model_id": message["model_id"],
                    "contract_id": message["contract_id"],
                    "threshold": message["threshold"],
                },
            }
        )
        if dataset["dataset_error"] is not None:
            errors.append(
                JobError(
                    code=str(dataset["dataset_error"]), message=f"{dataset['source']}: dataset not read", source=uri
                )
            )
    ctx.progress.set(1.0)
    return JobOutcome(
        summary=tuple(summary), errors=tuple(errors), result_path=str(output.relative_to(ctx.layout.root))
    )
