"""Which models are installed and whether their files verify: the library behind ``faceprint models``.

Example:
    >>> rows = model_statuses()                                   # doctest: +SKIP
    >>> [(row.spec.id, row.status) for row in rows][:1]           # doctest: +SKIP
    [('dlib-resnet-v1', 'ok')]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from faceprint.errors import FaceprintError
from faceprint.models.registry import ModelRegistry
from faceprint.models.spec import ModelSpec
from faceprint.models.store import ModelStore

__all__ = ["ModelStatus", "model_statuses"]


@dataclass(frozen=True, slots=True)
class ModelStatus:
    """A model and the verification of each of its files (``status`` is ``ok`` or the first error code)."""

    spec: ModelSpec
    status: str
    files: tuple[dict[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "id": spec.id,
            "task": spec.task,
            "status": self.status,
            "license": spec.license,
            "files": list(self.files),
            "contract_id": spec.contract_id if spec.task == "embedding" else None,
            "default_threshold": spec.default_threshold,
            "far_thresholds": dict(spec.far_thresholds),
            "calibration": spec.calibration.to_dict() if spec.calibration is not None else None,
        }


def model_statuses(store: ModelStore | None = None) -> list[ModelStatus]:
    """Every built-in and registered model, each file located and verified by sha256."""
    store = store if store is not None else ModelStore()
    rows: list[ModelStatus] = []
    for spec in ModelRegistry(store=store).specs().values():
        files: list[dict[str, Any]] = []
        status = "ok"
        for model_file in spec.files:
            try:
                path = store.path_for(model_file)
                files.append({"name": model_file.name, "path": str(path), "sha256": model_file.sha256, "ok": True})
            except FaceprintError as err:
                status = err.code if status == "ok" else status
                files.append({"name": model_file.name, "sha256": model_file.sha256, "ok": False, "error": err.message})
        rows.append(ModelStatus(spec=spec, status=status, files=tuple(files)))
    return rows
