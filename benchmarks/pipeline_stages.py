"""Per-stage timings of the 1:1 pipeline on LFW View 1, beside the face_recognition library.

Each system runs in its own subprocess (so peak RSS is its own) on the same images, one image at a time,
on whatever cores the machine has. Prints median and p95 per stage, faces/s and peak RSS.

    python benchmarks/pipeline_stages.py [--images 200] [--data ../shared/data]

The baseline needs ``pip install --no-deps face_recognition`` (it reuses the same dlib weights); the
script installs nothing itself and reports the baseline as missing when the package is absent.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _images(data: Path, count: int) -> list[Path]:
    files = sorted((data / "lfw-view1" / "images").glob("*/*.jpg"))
    if not files:
        raise SystemExit(f"no LFW images under {data}/lfw-view1/images")
    step = max(1, len(files) // count)
    return files[::step][:count]


def _timed(timings: dict[str, list[float]], stage: str, func: Callable[..., Any], *args: Any) -> Any:
    start = time.perf_counter()
    value = func(*args)
    timings.setdefault(stage, []).append(time.perf_counter() - start)
    return value


def run_faceprint(paths: list[Path], options: dict[str, Any]) -> dict[str, Any]:
    from faceprint.io.image import decode_image
    from faceprint.pipeline import PipelineConfig, load_pipeline

    pipeline = load_pipeline(PipelineConfig(flip_average=options.get("flip", True)))
    timings: dict[str, list[float]] = {}
    faces = 0
    start = time.perf_counter()
    for path in paths:
        data = path.read_bytes()
        image = _timed(timings, "decode", decode_image, data)
        detector = pipeline.fast_detector or pipeline.detector
        found = _timed(timings, "detect", pipeline._run_detector, detector, image)
        if not found:
            continue
        landmarks = _timed(timings, "landmarks", pipeline.landmarker.landmarks, image, found[0])
        detection = found[0].with_landmarks(landmarks)
        chip = _timed(timings, "align", pipeline.extract_aligned_face, image, detection)
        _timed(timings, "embed", pipeline.embed, chip)
        faces += 1
    total = time.perf_counter() - start
    backend = pipeline.embedder.backend_name
    return {"timings": timings, "faces": faces, "images": len(paths), "total_s": total, "backend": backend}


def run_face_recognition(paths: list[Path], options: dict[str, Any]) -> dict[str, Any]:
    try:
        import face_recognition  # type: ignore[import-not-found]
    except Exception as err:  # any import failure means "baseline unavailable"
        return {"error": f"face_recognition unavailable ({err}); pip install --no-deps face_recognition"}
    from face_recognition import api  # type: ignore[import-not-found]

    timings: dict[str, list[float]] = {}
    faces = 0
    start = time.perf_counter()
    for path in paths:
        image = _timed(timings, "decode", face_recognition.load_image_file, str(path))
        locations = _timed(timings, "detect", face_recognition.face_locations, image)
        if not locations:
            continue
        landmarks = _timed(timings, "landmarks", api._raw_face_landmarks, image, locations[:1], "small")
        _timed(timings, "embed", api.face_encoder.compute_face_descriptor, image, landmarks[0], 1)
        faces += 1
    total = time.perf_counter() - start
    return {"timings": timings, "faces": faces, "images": len(paths), "total_s": total, "backend": "dlib"}


def _child(system: str, data: Path, count: int, options: dict[str, Any]) -> None:
    paths = _images(data, count)
    runner = run_faceprint if system == "faceprint" else run_face_recognition
    result = runner(paths, options)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sys.stdout.write(json.dumps(result))


def _summary(result: dict[str, Any]) -> dict[str, str]:
    if "error" in result:
        return {"error": result["error"]}
    row: dict[str, str] = {}
    for stage in ("decode", "detect", "landmarks", "align", "embed"):
        values = sorted(result["timings"].get(stage, []))
        if not values:
            row[stage] = "-"
            continue
        p95 = values[min(len(values) - 1, int(0.95 * len(values)))]
        row[stage] = f"{statistics.median(values) * 1000:.1f} / {p95 * 1000:.1f}"
    row["faces found"] = f"{result['faces']}/{result['images']}"
    row["faces/s (1 process)"] = f"{result['faces'] / result['total_s']:.1f}"
    row["peak RSS MB"] = f"{result['peak_rss_mb']:.0f}"
    row["embed backend"] = result["backend"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--no-flip", action="store_true", help="faceprint without the mirror-average")
    parser.add_argument("--child", choices=["faceprint", "face_recognition"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    options = {"flip": not args.no_flip}
    if args.child:
        _child(args.child, args.data, args.images, options)
        return
    results = {}
    for system in ("faceprint", "face_recognition"):
        command = [sys.executable, __file__, "--child", system, "--images", str(args.images), "--data", str(args.data)]
        if args.no_flip:
            command.append("--no-flip")
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        results[system] = json.loads(proc.stdout) if proc.returncode == 0 else {"error": proc.stderr[-500:]}
    summaries = {system: _summary(result) for system, result in results.items()}
    keys = [k for k in summaries["faceprint"] if k != "error"] or ["error"]
    print(f"LFW View 1, {args.images} images, one process, one image at a time (ms: median / p95)")
    print(f"{'':24}{'faceprint':>22}{'face_recognition':>22}")
    for key in keys:
        print(f"{key:24}{summaries['faceprint'].get(key, '-'):>22}{summaries['face_recognition'].get(key, '-'):>22}")
    for system, summary in summaries.items():
        if "error" in summary:
            print(f"{system}: {summary['error']}")


if __name__ == "__main__":
    main()
