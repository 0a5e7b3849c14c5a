"""The ``face_pairs`` job: pair datasets (TAR / TAR.GZ / ZIP uploads) → :func:`faceprint.batch.pairs.run_pairs_job`.

The result is the TAR.GZ ``faceprint pairs`` writes for the same datasets, byte for byte: each upload is
given to the job under its uploaded file name, since the output names its inputs, and read in place
(through the upload store, decrypted as it is read when uploads are sealed; never copied). With an
encryption key the result archive is sealed at rest too (downloads decrypt it as they stream).

It runs on the worker's own long-lived engine (no second model load), reports progress as photos are
embedded, and stops at a cancel (nothing is written then).

Example:
    >>> PairsParams.from_dict({"details": True}).face
    'primary'
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from typing import Any, Literal

from faceprint.analyze import CancelledError, PipelineFactory, check_face_mode
from faceprint.errors import FaceprintError, UsageError
from faceprint.io.archive import DatasetSource
from faceprint.jobs.context import JobContext, JobOutcome, result_context
from faceprint.jobs.model import JobError
from faceprint.jobs.uploads import UnsupportedMediaError, clean_filename

__all__ = ["PairsJobError", "PairsParams", "load_factory", "run_face_pairs"]


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


class PairsJobError(FaceprintError):
    """The pairs job as a whole failed (its error code is the library's)."""

    code = "pairs_job_error"
    http_status = 422


def run_face_pairs(ctx: JobContext) -> JobOutcome:
    """Run a ``face_pairs`` job (see the module doc)."""
    params = PairsParams.from_dict(ctx.job.params)
    inputs: list[DatasetSource] = []
    used: set[str] = set()
    for number, uri in enumerate(ctx.job.sources, start=1):
        record = ctx.uploads.resolve(uri)
        if record.media_type != "archive":
            raise UnsupportedMediaError(
                f"{record.filename}: face_pairs takes TAR, TAR.GZ or ZIP datasets", details={"source": uri}
            )
        name = clean_filename(record.filename)
        if name in used:
            name = f"{number:04d}-{name}"
        used.add(name)
        # Read in place (decrypted as read when sealed): no copy, no clear file, whatever the mode.
        inputs.append(DatasetSource(name, functools.partial(ctx.uploads.open, record.id)))
    ctx.layout.results_dir.mkdir(parents=True, exist_ok=True)
    output = ctx.layout.result_path(ctx.job.id)
    from faceprint.batch.pairs import PairsOptions, run_pairs_job

    options = PairsOptions(details=params.details, face=params.face, quiet=True, max_pairs=ctx.limits.max_pairs)
    try:
        result = run_pairs_job(
            inputs,
            output,
            options=options,
            analyzer=ctx.analyzer,
            progress=ctx.progress.set,
            cancel=ctx.cancel,
            output_cipher=ctx.cipher,
            output_context=result_context(ctx.job.id),
        )
    except CancelledError:
        return JobOutcome()
    except FaceprintError as err:
        raise PairsJobError(err.message, details={"code": err.code}) from None
    message: dict[str, Any] = {
        "model_id": result.model_id,
        "contract_id": result.contract_id,
        "threshold": result.threshold,
        "datasets": [
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
        ],
    }
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
