"""Embed the calibration benchmark's photos once and cache what calibration needs (not shipped code).

For each photo: the selected face's faceprint (the default pipeline: primary face, cheap detection pass
first, mirror averaging), its detection (box, score, detector, flags, 5 landmarks), its aligned chip and the
image size, so face quality can be recomputed from the cache without embedding again. The cache is an
``.npz`` per data set under ``--cache-dir`` (default ``.cache/calibration``, git-ignored).

It calls the pipeline's stages itself (it must keep the chips, which the engine does not return), in the
order the engine's ``primary`` rule does: checked against ``faceprint.analyze.Analyzer`` on 100 CFP photos,
the vectors agree to 6e-17 and every face's quality is identical.

Usage:
    .venv/bin/python benchmarks/calibration_cache.py --workers 2 lfw cfp faces-small
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "calibration"
CACHE_VERSION = 1

_PIPELINE: Any = None


def dataset_images(name: str) -> tuple[Path, list[str]]:
    """The images folder and the relative image paths of one data set."""
    from faceprint.evaluate.pairs_list import read_pairs_list

    if name == "lfw":
        root = DATA / "lfw-view1"
        paths: dict[str, None] = {}
        for list_name in ("pairsDevTrain.txt", "pairsDevTest.txt"):
            for pair in read_pairs_list(root / list_name):
                paths[pair.path_a] = None
                paths[pair.path_b] = None
        return root / "images", list(paths)
    if name == "cfp":
        root = DATA / "cfp-train"
        images = root / "images"
        return images, sorted(str(p.relative_to(images)) for p in images.glob("*/*/*.jpg"))
    if name == "faces-small":
        root = DATA / "faces-small" / "face_recognition"
        with (root / "labels.csv").open(newline="") as handle:
            return root, [row["file"] for row in csv.DictReader(handle)]
    raise SystemExit(f"unknown data set {name!r}")


def _init() -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    global _PIPELINE  # one pipeline per worker process (this is a script, not library code)
    from faceprint.batch.engine import worker_pipeline_config
    from faceprint.pipeline import PipelineConfig, load_pipeline

    _PIPELINE = load_pipeline(worker_pipeline_config(PipelineConfig()))


def _embed_one(path: str) -> dict[str, Any]:
    from faceprint.errors import FaceprintError
    from faceprint.io.image import decode_image

    pipeline = _PIPELINE
    data = Path(path).read_bytes()
    record: dict[str, Any] = {"sha256": hashlib.sha256(data).hexdigest()}
    try:
        image = decode_image(data, name=path)
        record["size_wh"] = (int(image.shape[1]), int(image.shape[0]))
        detections = pipeline.detect_faces(image, largest_only=True)
        if not detections:
            record["error_code"] = "no_face"
            return record
        detection = detections[0]
        chip = pipeline.extract_aligned_face(image, detection)
        faceprint = pipeline.embed(chip)
    except FaceprintError as err:
        record["error_code"] = err.code
        return record
    record.update(
        error_code=None,
        vector=faceprint.vector,
        chip=chip,
        bbox_xyxy=detection.bbox_xyxy,
        score=detection.score,
        detector=detection.detector,
        flags=list(detection.flags),
        landmarks_xy=detection.landmarks_xy,
    )
    return record


def build(name: str, cache_dir: Path, workers: int) -> Path:
    images_dir, paths = dataset_images(name)
    out = cache_dir / f"{name}.npz"
    started = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, initializer=_init) as pool:
        records = []
        for index, record in enumerate(pool.imap(_embed_one, [str(images_dir / p) for p in paths], chunksize=4)):
            records.append(record)
            if index % 250 == 0:
                print(f"{name}: {index}/{len(paths)} {time.perf_counter() - started:.0f}s", flush=True)
    count = len(records)
    vectors = np.zeros((count, 128), np.float32)
    chips = np.zeros((count, 150, 150, 3), np.uint8)
    landmarks = np.full((count, 5, 2), np.nan)
    meta = []
    for i, record in enumerate(records):
        if record.get("error_code") is None:
            vectors[i] = record["vector"]
            chips[i] = record["chip"]
            landmarks[i] = np.asarray(record["landmarks_xy"], dtype=np.float64)
        meta.append({k: v for k, v in record.items() if k not in ("vector", "chip", "landmarks_xy")})
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npz")
    np.savez_compressed(
        tmp,
        paths=np.array(paths),
        vectors=vectors,
        chips=chips,
        landmarks=landmarks,
        meta=np.array(json.dumps({"version": CACHE_VERSION, "images": str(images_dir), "records": meta})),
    )
    os.replace(tmp, out)
    failed = sum(1 for r in records if r.get("error_code") is not None)
    elapsed = time.perf_counter() - started
    print(f"{name}: {count} photos, {failed} failed, {elapsed:.0f}s -> {out}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("datasets", nargs="+", choices=["lfw", "cfp", "faces-small"])
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    for name in args.datasets:
        build(name, args.cache_dir, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
