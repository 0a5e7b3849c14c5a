"""Throughput on LFW View 1: embedding, detection and end to end, beside dlib and face_recognition.

Prints one table per stage:

* embedding faces/s on aligned chips: the converted ResNet on ONNX Runtime at batch 1 and 32 with 1 and 2
  intra-op threads, dlib's own ResNet, and ``face_recognition.face_encodings`` given the boxes; with the
  share of the FLOP bound each reaches (the ResNet costs 0.54 GFLOP per face; the machine's achievable
  GFLOP/s per core is measured with a float32 numpy matmul, and N threads are held to N times that);
* detection images/s: dlib HOG on the native 250 px LFW images (upsample 0 and 1) and on 640 px photos,
  and the MMOD CNN at 640 px on ONNX Runtime and on dlib;
* end-to-end images/s (decode, detect, landmarks, align, embed): the engine (``faceprint.analyze.Analyzer``) in
  one process and on its pool of two workers (``intra_op_threads=1`` each), the dlib backend, and
  ``face_recognition.face_encodings(face_recognition.load_image_file(path))``; with each one's peak RSS.

Every group runs in its own subprocess, so peak RSS is its own and one group's threads do not linger in the
next. Defaults finish in about a minute on two cores (under three on a slow machine); raise the counts
for steadier numbers:

    python benchmarks/throughput.py [--data ../shared/data] [--embed-faces 512] [--e2e-images 500] [--json out.json]

The face_recognition baseline needs ``pip install --no-deps face_recognition`` (it reuses the same dlib
weights); it is reported as unavailable when missing. Timings on a machine shared with other work are
noisy: the load average is printed with the results.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESNET_GFLOP_PER_FACE = 0.54
"""dlib's ResNet-29 on a 150x150 chip: 0.27 G multiply-adds (counted from its layers), 2 FLOP each."""


# --- helpers shared by the children ---------------------------------------------------------------------


def lfw_images(data: Path, count: int) -> list[Path]:
    """``count`` LFW View 1 images spread evenly over the (sorted) folder."""
    files = sorted((data / "lfw-view1" / "images").glob("*/*.jpg"))
    if not files:
        raise SystemExit(f"no LFW images under {data}/lfw-view1/images")
    step = max(1, len(files) // max(count, 1))
    return files[::step][:count]


def photos_640(data: Path, count: int) -> list[Any]:
    """Real photos (faces-small) resized so the longer side is 640 px, as RGB uint8 arrays."""
    import numpy as np
    from PIL import Image

    folder = data / "faces-small" / "face_recognition" / "examples"
    names = ["obama.jpg", "biden.jpg", "two_people.jpg", "obama-720p.jpg", "obama2.jpg", "obama-1080p.jpg"]
    images = []
    for name in names:
        path = folder / name
        if not path.is_file():
            continue
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        scale = 640 / max(image.size)
        size = (round(image.size[0] * scale), round(image.size[1] * scale))
        images.append(np.ascontiguousarray(np.asarray(image.resize(size, Image.Resampling.BILINEAR))))
    if not images:
        raise SystemExit(f"no photos under {folder}")
    return [images[i % len(images)] for i in range(count)]


def rate(count: int, func: Callable[[], Any], *, warmup: Callable[[], Any] | None = None) -> float:
    """Items per second of ``func`` (which handles ``count`` items), after one untimed warm-up call."""
    if warmup is not None:
        warmup()
    start = time.perf_counter()
    func()
    elapsed = time.perf_counter() - start
    return count / elapsed if elapsed > 0 else float("inf")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _face_recognition() -> Any:
    try:
        return importlib.import_module("face_recognition")
    except Exception as err:  # any import failure means "baseline unavailable"
        raise RuntimeError(f"face_recognition unavailable ({err}); pip install --no-deps face_recognition") from err


# --- children ---------------------------------------------------------------------------------------------------


def child_matmul(options: dict[str, Any]) -> dict[str, Any]:
    """Best-of-5 float32 GFLOP/s of an n x n matmul (numpy's BLAS, threads fixed by the parent's env)."""
    import numpy as np

    n = int(options.get("n", 1024))
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm-up: thread pool start, page faults
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return {"gflops": 2 * n**3 / best / 1e9}


def _chips(data: Path, count: int) -> tuple[list[Any], list[tuple[Any, tuple[int, int, int, int]]]]:
    """Aligned 150 px chips of the largest face in LFW images, and (image, css box) pairs for face_recognition."""
    from faceprint.io.image import load_image
    from faceprint.pipeline import PipelineConfig, load_pipeline

    pipeline = load_pipeline(PipelineConfig(backend="dlib", fallback=False))
    chips, boxes = [], []
    for path in lfw_images(data, count * 2):
        image = load_image(path)
        found = pipeline.detect_faces(image, largest_only=True)
        if not found:
            continue
        chips.append(pipeline.extract_aligned_face(image, found[0]))
        left, top, right, bottom = (round(v) for v in found[0].bbox_xyxy)
        boxes.append((image, (top, right, bottom, left)))
        if len(chips) == count:
            break
    return chips, boxes


def child_embed(options: dict[str, Any]) -> dict[str, Any]:
    from faceprint.embed.dlib_resnet import DlibResnetEmbedder
    from faceprint.embed.onnx import OnnxEmbedder
    from faceprint.models.catalog import DLIB_RESNET_ID, builtin_specs
    from faceprint.models.dlib_to_onnx import ConvertedModelCache
    from faceprint.models.store import ModelStore, default_model_dir

    data, faces, dlib_faces = Path(options["data"]), int(options["faces"]), int(options["dlib_faces"])
    chips, boxes = _chips(data, faces)
    spec = builtin_specs()[DLIB_RESNET_ID]
    dat = ModelStore().path_for(spec.files[0])
    cache = ConvertedModelCache(default_model_dir() / "converted")
    rows: list[dict[str, Any]] = []

    def by_batches(embed: Callable[[Sequence[Any]], Any], items: Sequence[Any], batch: int) -> Callable[[], None]:
        def run() -> None:
            for start in range(0, len(items), batch):
                embed(items[start : start + batch])

        return run

    for threads in (1, 2):
        for batch in (1, 32):
            embedder = OnnxEmbedder.from_dlib_resnet(
                spec, dat, cache, source_sha256=spec.files[0].sha256, batch_size=batch, intra_op_threads=threads
            )
            speed = rate(
                len(chips),
                by_batches(embedder.embed_chips, chips, batch),
                warmup=functools.partial(embedder.embed_chips, chips[:batch]),
            )
            rows.append({"system": "faceprint ONNX", "batch": batch, "threads": threads, "faces_per_s": speed})

    dlib_chips = chips[:dlib_faces]
    dlib_embedder = DlibResnetEmbedder(spec, dat)
    for batch in (1, 32):
        speed = rate(
            len(dlib_chips),
            by_batches(dlib_embedder.embed_chips, dlib_chips, batch),
            warmup=lambda: dlib_embedder.embed_chips(dlib_chips[:1]),
        )
        rows.append({"system": "dlib ResNet", "batch": batch, "threads": "dlib", "faces_per_s": speed})

    try:
        face_recognition = _face_recognition()
    except RuntimeError as err:
        rows.append({"system": "face_recognition", "error": str(err)})
    else:
        subset = boxes[:dlib_faces]

        def encode_all() -> None:
            for image, box in subset:
                face_recognition.face_encodings(image, known_face_locations=[box])

        speed = rate(
            len(subset),
            encode_all,
            warmup=lambda: face_recognition.face_encodings(subset[0][0], known_face_locations=[subset[0][1]]),
        )
        rows.append({"system": "face_recognition.face_encodings", "batch": 1, "threads": "dlib", "faces_per_s": speed})
    return {"rows": rows, "faces": len(chips), "dlib_faces": len(dlib_chips)}


def child_detect(options: dict[str, Any]) -> dict[str, Any]:
    from faceprint.detect.dlib_hog import DlibHogDetector
    from faceprint.detect.dlib_mmod import DlibMmodDetector
    from faceprint.detect.onnx_mmod import OnnxMmodDetector
    from faceprint.io.image import load_image
    from faceprint.models.catalog import DLIB_MMOD_ID, builtin_specs
    from faceprint.models.dlib_to_onnx import ConvertedModelCache
    from faceprint.models.store import ModelStore, default_model_dir

    data = Path(options["data"])
    lfw = [load_image(p) for p in lfw_images(data, int(options["images"]))]
    photos = photos_640(data, int(options["photo_images"]))
    mmod_photos = photos[: int(options["mmod_images"])]
    rows: list[dict[str, Any]] = []

    def run_all(detector: Any, images: Sequence[Any]) -> Callable[[], None]:
        def run() -> None:
            for image in images:
                detector.detect(image)

        return run

    for upsample in (0, 1):
        hog = DlibHogDetector(upsample=upsample)
        speed = rate(len(lfw), run_all(hog, lfw), warmup=functools.partial(hog.detect, lfw[0]))
        rows.append({"detector": f"dlib HOG, upsample {upsample}", "images": "LFW 250x250", "images_per_s": speed})
    for upsample in (0, 1):
        hog = DlibHogDetector(upsample=upsample)
        speed = rate(len(photos), run_all(hog, photos), warmup=functools.partial(hog.detect, photos[0]))
        rows.append({"detector": f"dlib HOG, upsample {upsample}", "images": "photos, 640 px", "images_per_s": speed})

    spec = builtin_specs()[DLIB_MMOD_ID]
    dat = ModelStore().path_for(spec.files[0])
    cache = ConvertedModelCache(default_model_dir() / "converted")
    for threads in (1, 2):
        onnx_mmod = OnnxMmodDetector.from_dlib_mmod(
            dat, cache, source_sha256=spec.files[0].sha256, intra_op_threads=threads
        )
        speed = rate(
            len(mmod_photos),
            run_all(onnx_mmod, mmod_photos),
            warmup=functools.partial(onnx_mmod.detect, mmod_photos[0]),
        )
        rows.append(
            {"detector": f"MMOD on ONNX, {threads} thread(s)", "images": "photos, 640 px", "images_per_s": speed}
        )
    dlib_mmod = DlibMmodDetector(dat, upsample=0)
    # dlib's MMOD takes seconds per 640 px image: no warm-up round beyond the first image's.
    speed = rate(len(mmod_photos), run_all(dlib_mmod, mmod_photos))
    rows.append({"detector": "MMOD on dlib", "images": "photos, 640 px", "images_per_s": speed})
    return {"rows": rows}


def child_e2e(options: dict[str, Any]) -> dict[str, Any]:
    """One system, one process: ``faceprint`` (backend, flip) or ``face_recognition``."""
    paths = lfw_images(Path(options["data"]), int(options["images"]))
    system = options["system"]
    if system == "face_recognition":
        face_recognition = _face_recognition()

        def encode(path: Path) -> int:
            return len(face_recognition.face_encodings(face_recognition.load_image_file(str(path))))

        encode(paths[0])  # warm-up
        start = time.perf_counter()
        found = sum(1 for path in paths if encode(path) > 0)
    else:
        from faceprint.analyze import Analyzer
        from faceprint.pipeline import PipelineConfig

        config = PipelineConfig(backend=options["backend"], flip_average=bool(options["flip"]))
        with Analyzer(config, workers=1) as analyzer:
            _analyze_all(analyzer, paths[:1])  # warm-up
            start = time.perf_counter()
            found = _analyze_all(analyzer, paths)
    elapsed = time.perf_counter() - start
    return {"images_per_s": len(paths) / elapsed, "found": found, "images": len(paths), "peak_rss_mb": peak_rss_mb()}


def _analyze_all(analyzer: Any, paths: Sequence[Path]) -> int:
    """Photos in which the engine found and embedded the primary face."""
    from faceprint.analyze import AnalyzeItem

    return sum(1 for result in analyzer.analyze([AnalyzeItem(str(p), p) for p in paths]) if result.ok)


def child_e2e_pool(options: dict[str, Any]) -> dict[str, Any]:
    from faceprint.analyze import Analyzer
    from faceprint.pipeline import PipelineConfig

    workers = int(options["workers"])
    paths = lfw_images(Path(options["data"]), int(options["images"]))
    # The engine's own worker pool (what `pairs`, `embed` and the job workers run on).
    with Analyzer(PipelineConfig(), workers=workers, executor="processes") as analyzer:
        _analyze_all(analyzer, paths[: 4 * workers])  # start every worker and load its models before timing
        start = time.perf_counter()
        found = _analyze_all(analyzer, paths)
        elapsed = time.perf_counter() - start
    # The workers have exited: the largest one's peak RSS.
    worker_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "images_per_s": len(paths) / elapsed,
        "found": found,
        "images": len(paths),
        "peak_rss_mb": max(worker_rss, peak_rss_mb()),
        "workers": workers,
    }


CHILDREN: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "matmul": child_matmul,
    "embed": child_embed,
    "detect": child_detect,
    "e2e": child_e2e,
    "e2e_pool": child_e2e_pool,
}


# --- the parent: run children, print tables ---------------------------------------------------------------------


def run_child(name: str, options: dict[str, Any], *, env: dict[str, str] | None = None) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", name, "--options", json.dumps(options)]
    merged = {**os.environ, **(env or {})}
    merged["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), merged.get("PYTHONPATH")]))
    proc = subprocess.run(command, capture_output=True, text=True, check=False, env=merged)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][-300:]}
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _measure_gflops() -> dict[int, dict[str, Any]]:
    return {
        threads: run_child("matmul", {}, env={"OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)})
        for threads in (1, 2)
    }


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def _fmt(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--embed-faces", type=int, default=128, help="chips for the ONNX embedding rows")
    parser.add_argument("--dlib-faces", type=int, default=32, help="chips for the dlib/face_recognition rows")
    parser.add_argument("--detect-images", type=int, default=60, help="LFW images for HOG")
    parser.add_argument("--photo-images", type=int, default=12, help="640 px photos for HOG")
    parser.add_argument("--mmod-images", type=int, default=3, help="640 px photos for MMOD (dlib: ~3 s each)")
    parser.add_argument("--e2e-images", type=int, default=120, help="LFW images end to end (faceprint ONNX)")
    parser.add_argument("--e2e-slow-images", type=int, default=24, help="... for the dlib-backed systems")
    parser.add_argument("--workers", type=int, default=2, help="processes in the pool row")
    parser.add_argument("--skip-baselines", action="store_true", help="leave out dlib and face_recognition")
    parser.add_argument("--json", type=Path, help="also write all results here")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.stdout.write(json.dumps(CHILDREN[args.child](json.loads(args.options))) + "\n")
        return

    data = str(args.data.resolve())
    started = time.perf_counter()
    load_before = os.getloadavg()
    results: dict[str, Any] = {"cores": len(os.sched_getaffinity(0)), "load_before": load_before}
    matmul_runs = [_measure_gflops()]
    results["embed"] = run_child("embed", {"data": data, "faces": args.embed_faces, "dlib_faces": args.dlib_faces})
    results["detect"] = run_child(
        "detect",
        {
            "data": data,
            "images": args.detect_images,
            "photo_images": args.photo_images,
            "mmod_images": args.mmod_images,
        },
    )
    fast = {"data": data, "images": args.e2e_images, "system": "faceprint", "backend": "auto"}
    slow = {"data": data, "images": args.e2e_slow_images}
    e2e: dict[str, Any] = {
        "faceprint ONNX, flip": run_child("e2e", {**fast, "flip": True}),
        "faceprint ONNX, no flip": run_child("e2e", {**fast, "flip": False}),
        f"faceprint ONNX, flip, pool of {args.workers} x 1 thread": run_child(
            "e2e_pool", {"data": data, "images": args.e2e_images, "workers": args.workers}
        ),
    }
    if not args.skip_baselines:
        e2e["faceprint dlib backend, flip"] = run_child(
            "e2e", {**slow, "system": "faceprint", "backend": "dlib", "flip": True}
        )
        e2e["face_recognition.face_encodings"] = run_child("e2e", {**slow, "system": "face_recognition"})
    results["e2e"] = e2e
    # Measured again at the end: the best of both is what the machine can do (other load only lowers it).
    matmul_runs.append(_measure_gflops())
    results["gflops"] = {
        threads: {"gflops": max(run[threads].get("gflops", 0.0) for run in matmul_runs)} for threads in (1, 2)
    }
    results["load_after"] = os.getloadavg()
    results["wall_s"] = time.perf_counter() - started
    print_report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")


def print_report(results: dict[str, Any]) -> None:
    gflops = {int(k): v.get("gflops") for k, v in results["gflops"].items()}
    cores = results["cores"]
    per_core = gflops.get(1)

    def bound(threads: Any) -> float | None:
        # The bound of N threads is N cores at the single-thread matmul rate: a measured 2-thread matmul
        # collapses as soon as another process takes one core (a BLAS thread then waits at every barrier),
        # which says more about the neighbours than about the machine. dlib and face_recognition run the
        # network with dlib's own threads: they are held to all cores.
        count = threads if isinstance(threads, int) else min(cores, 2)
        return count * per_core / RESNET_GFLOP_PER_FACE if per_core else None

    print(
        f"faceprint throughput, {cores} cores; load average {results['load_before'][0]:.2f} before, "
        f"{results['load_after'][0]:.2f} after; {results['wall_s']:.0f} s in all"
    )
    print(
        "numpy float32 matmul (best of start and end): "
        + ", ".join(f"{t} thread(s) {g:.1f} GFLOP/s" for t, g in gflops.items() if g)
        + f"\nFLOP bound at {RESNET_GFLOP_PER_FACE} GFLOP/face, N threads = N x the 1-thread rate: "
        + ", ".join(f"{n} thread(s) {bound(n) or 0:.0f} faces/s" for n in (1, 2))
    )

    embed = results["embed"]
    print(
        f"\nEmbedding, aligned 150 px LFW chips ({embed.get('faces', '?')} ONNX, {embed.get('dlib_faces', '?')} dlib)"
    )
    rows = []
    for row in embed.get("rows", []):
        if "error" in row:
            rows.append([row["system"], "-", "-", row["error"][:60], "-"])
            continue
        limit = bound(row["threads"])
        share = "-" if limit is None else f"{100 * row['faces_per_s'] / limit:.0f}%"
        rows.append([row["system"], str(row["batch"]), str(row["threads"]), _fmt(row["faces_per_s"]), share])
    if "error" in embed:
        rows.append(["(embedding child failed)", "", "", embed["error"][:80], ""])
    print(table(["system", "batch", "threads", "faces/s", "of FLOP bound"], rows))

    detect = results["detect"]
    print("\nDetection (one image at a time)")
    rows = [[r["detector"], r["images"], _fmt(r["images_per_s"])] for r in detect.get("rows", [])]
    if "error" in detect:
        rows.append(["(detection child failed)", detect["error"][:80], ""])
    print(table(["detector", "images", "images/s"], rows))

    print("\nEnd to end on LFW, largest face (decode, detect, landmarks, align, embed)")
    rows = []
    for name, row in results["e2e"].items():
        if "error" in row:
            rows.append([name, "-", "-", "-", row["error"][:70]])
            continue
        passes = 1 if "no flip" in name or name.startswith("face_recognition") else 2
        threads = 1 if "pool" in name else min(cores, 2)
        limit = bound(threads)
        workers = int(row.get("workers", 1))
        share = "-" if limit is None else f"{100 * row['images_per_s'] * passes / (limit * workers):.0f}%"
        rows.append(
            [name, _fmt(row["images_per_s"]), f"{row['found']}/{row['images']}", f"{row['peak_rss_mb']:.0f}", share]
        )
    print(table(["system", "images/s", "faces found", "peak RSS MB", "embed FLOP bound used"], rows))
    print(
        "\n'of FLOP bound': faces/s over (threads x 1-thread matmul GFLOP/s / 0.54 GFLOP). End to end, the share "
        "counts the network passes per face (2 with flip averaging) against the bound of all the threads used."
    )


if __name__ == "__main__":
    main()
