"""Peak memory of one worker running the real pipeline over a mix of photo sizes, bounded vs unbounded.

``faceprint evaluate`` on CFP grew its two workers to 1.7 GB and 1.1 GB RSS: the photos vary in size, and
profile faces fall through the HOG stages to the MMOD CNN. Each variant runs in its own process (peak RSS
is per process), over the same photos in the same order, in this run:

- ``baseline``: what the pipeline did before: ONNX Runtime's CPU memory arena and memory patterns on for
  MMOD, MMOD and HOG run at their full upsampling on any photo size;
- ``bounded``: the pipeline as built today by ``load_pipeline``: no arena for MMOD's varying shapes,
  MMOD's input bounded (``onnx_mmod.MAX_INPUT_PX``) and HOG's upsampled size bounded
  (``dlib_hog.HOG_MAX_UPSAMPLED_PX``).

Photos: CFP profiles and frontals (``../shared/data/cfp-train``: 100-1,400 px, many distinct sizes), LFW
(250 px) and the faces-small photos (up to 2,333 px), interleaved. Each photo goes through
``embed_main_face`` (what ``pairs``/``evaluate`` run: the cheap pass, then the full cascade).

Run: ``python benchmarks/memory.py [--photos 160] [--threads 1]``. It prints one row per variant: peak RSS,
RSS at the end, photos, faces found, the MMOD stage's share of photos, and seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACEPRINT_TEST_DATA", REPO.parent / "shared" / "data"))
TARGET_MB = 600


def photo_mix(limit: int) -> list[Path]:
    """``limit`` photos, CFP profiles first in the rotation (they are what reaches MMOD), then frontals, LFW
    and faces-small, interleaved so that sizes change from one photo to the next."""
    cfp = DATA / "cfp-train" / "images"
    groups = [
        sorted(cfp.glob("*/profile/*.jpg")),
        sorted(cfp.glob("*/frontal/*.jpg"))[::7],
        sorted((DATA / "lfw-view1" / "images").glob("*/*.jpg"))[::40],
        sorted(p for p in (DATA / "faces-small").rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")),
    ]
    weights = (4, 1, 1, 1)  # profiles dominate, as in CFP's frontal-profile protocol
    mixed: list[Path] = []
    positions = [0, 0, 0, 0]
    while len(mixed) < limit and any(positions[i] < len(g) for i, g in enumerate(groups)):
        for index, (group, weight) in enumerate(zip(groups, weights, strict=True)):
            for _ in range(weight):
                if positions[index] < len(group) and len(mixed) < limit:
                    mixed.append(group[positions[index]])
                    positions[index] += 1
    return mixed


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def _unbounded_detector(pipeline: Any, config: Any) -> Any:
    """The cascade as it was before: MMOD with the arena and full upsampling, HOG at full upsampling."""
    from faceprint.detect.cascade import CascadeDetector
    from faceprint.detect.dlib_hog import DlibHogDetector
    from faceprint.detect.lazy import LazyDetector
    from faceprint.detect.onnx_mmod import OnnxMmodDetector
    from faceprint.models.catalog import DLIB_MMOD_ID, builtin_specs
    from faceprint.models.dlib_to_onnx import ConvertedModelCache
    from faceprint.models.store import ModelStore, default_model_dir
    from faceprint.pipeline import build_detector

    store = ModelStore()
    spec = builtin_specs()[DLIB_MMOD_ID]
    onnx_path = ConvertedModelCache(default_model_dir() / "converted", digests=store.digests).mmod(
        store.path_for(spec.files[0]), source_sha256=spec.files[0].sha256
    )

    def mmod(upsample: int) -> Any:
        return LazyDetector(
            f"dlib-mmod-onnx@{upsample}",
            lambda: OnnxMmodDetector(
                onnx_path,
                upsample=upsample,
                intra_op_threads=config.intra_op_threads,
                max_input_px=None,
                bounded_memory=False,
            ),
        )

    assert isinstance(pipeline.detector, CascadeDetector)
    native = next(s.native for s in pipeline.detector.stages if isinstance(s, DlibHogDetector))
    return build_detector(config, hog_native=native, mmod=mmod, hog_max_upsampled_px=None)


def run_variant(variant: str, photos: list[Path], threads: int) -> dict[str, Any]:
    """Runs in the child process: load, analyse every photo, report memory."""
    from faceprint.detect.cascade import CascadeDetector
    from faceprint.detect.lazy import LazyDetector
    from faceprint.io.image import load_image
    from faceprint.pipeline import PipelineConfig, load_pipeline

    config = PipelineConfig(intra_op_threads=threads)
    pipeline = load_pipeline(config)
    if variant == "baseline":
        pipeline.detector, pipeline.fast_detector = _unbounded_detector(pipeline, config)
    loaded_mb = _rss_mb()
    started = time.perf_counter()
    faces = mmod_photos = failed = 0
    largest_mp = 0.0
    assert isinstance(pipeline.detector, CascadeDetector)
    for path in photos:
        try:
            image = load_image(path)
        except Exception:  # a photo the decoder refuses is not what is measured here
            failed += 1
            continue
        largest_mp = max(largest_mp, image.shape[0] * image.shape[1] / 1e6)
        face, _ = pipeline.embed_main_face(image)
        faces += face is not None
        mmod_photos += face is not None and face.detection.detector.startswith("dlib-mmod")
    return {
        "variant": variant,
        "photos": len(photos) - failed,
        "faces": faces,
        "by_mmod": mmod_photos,
        "mmod_built": any(isinstance(s, LazyDetector) and s.built is not None for s in pipeline.detector.stages),
        "largest_mp": round(largest_mp, 2),
        "loaded_mb": round(loaded_mb),
        "peak_mb": round(_peak_mb()),
        "end_mb": round(_rss_mb()),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=160)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads, as one of two workers")
    parser.add_argument("--variant", choices=("baseline", "bounded"), help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    photos = photo_mix(args.photos)
    if args.variant is not None:
        print(json.dumps(run_variant(args.variant, photos, args.threads)))
        return
    if not photos:
        raise SystemExit(f"no photos under {DATA} (set FACEPRINT_TEST_DATA)")
    rows = []
    for variant in ("baseline", "bounded"):
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                "--photos",
                str(args.photos),
                "--threads",
                str(args.threads),
                "--variant",
                variant,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
    header = f"{'variant':<10} {'peak MB':>8} {'end MB':>7} {'loaded MB':>9} {'photos':>6} {'faces':>5} {'by MMOD':>7}"
    print(header + f" {'largest MP':>10} {'s':>6}")
    for row in rows:
        print(
            f"{row['variant']:<10} {row['peak_mb']:>8} {row['end_mb']:>7} {row['loaded_mb']:>9} {row['photos']:>6} "
            f"{row['faces']:>5} {row['by_mmod']:>7} {row['largest_mp']:>10} {row['seconds']:>6}"
        )
    bounded = rows[-1]
    verdict = "under" if bounded["peak_mb"] < TARGET_MB else "OVER"
    print(f"bounded peak {bounded['peak_mb']} MB: {verdict} the {TARGET_MB} MB target per worker")


if __name__ == "__main__":
    main()
