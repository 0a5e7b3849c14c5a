"""Identification: accuracy on LFW View 1, and search latency / memory at scale (numpy vs FAISS).

1. **LFW View 1, open set.** Every person with 2+ photos is enrolled from their first photo; their other
   photos are *mated* probes (rank-1, rank-5, and the rate accepted as the right person at the cut-off).
   Persons with a single photo are never enrolled: their photos are *non-mated* probes, and the share of
   them accepted as somebody is the open-set false-accept rate (FPIR). Reported at the pipeline's default
   cut-off and a few others. Embeddings are cached (``--cache``) so re-runs are free.
2. **Scale.** Synthetic 128-d unit templates (2 per person) at 1e4 / 1e5 / 1e6: build time, index memory,
   peak RSS, and search latency for one probe and for a batch of 100, for the exact numpy index and FAISS
   ``IndexFlatIP`` (when installed). Each measurement runs in its own subprocess so peak RSS is its own.

    python benchmarks/identify.py [--people 300 --strangers 300 | --all] [--sizes 1e4,1e5,1e6]
                                  [--data ../shared/data] [--cache /tmp/lfw-embeddings.npz]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]


# --- 1. LFW View 1 -------------------------------------------------------------------------------------


def _lfw_split(images: Path, people: int | None, strangers: int | None) -> tuple[dict[str, list[Path]], list[Path]]:
    """Persons with 2+ photos (their photos) and photos of single-photo persons, spread evenly by name."""
    mated: dict[str, list[Path]] = {}
    singles: list[Path] = []
    for folder in sorted(images.iterdir()):
        photos = sorted(folder.glob("*.jpg"))
        if len(photos) >= 2:
            mated[folder.name] = photos
        elif photos:
            singles.append(photos[0])
    if people is not None and people < len(mated):
        names = sorted(mated)
        step = len(names) / people
        mated = {names[int(i * step)]: mated[names[int(i * step)]] for i in range(people)}
    if strangers is not None and strangers < len(singles):
        step = len(singles) / strangers
        singles = [singles[int(i * step)] for i in range(strangers)]
    return mated, singles


def _embed_all(paths: list[Path], cache: Path | None, flip: bool) -> dict[str, np.ndarray | None]:
    """Faceprint vector of the face nearest the image centre (LFW's subject), or None; cached on disk."""
    from faceprint.analyze import AnalyzeItem, AnalyzeOptions, Analyzer
    from faceprint.pipeline import PipelineConfig

    analyzer = Analyzer(PipelineConfig(flip_average=flip))
    key_prefix = f"{analyzer.spec.contract_id}|flip={flip}|"
    cached: dict[str, np.ndarray | None] = {}
    if cache is not None and cache.exists():
        with np.load(cache, allow_pickle=False) as data:
            for key, vector in zip(data["keys"].tolist(), data["vectors"], strict=True):
                cached[str(key)] = None if not np.any(vector) else vector
    out: dict[str, np.ndarray | None] = {}
    todo = [p for p in paths if key_prefix + str(p) not in cached]
    start = time.perf_counter()
    # Every face through the engine; the one nearest the image centre is LFW's subject.
    results = analyzer.analyze([AnalyzeItem(str(p), p) for p in todo], options=AnalyzeOptions(face="all"))
    for number, (path, result) in enumerate(zip(todo, results, strict=True), start=1):
        vector = None
        if result.faceprints and result.size_wh is not None:
            centre = np.array(result.size_wh) / 2
            face = min(
                (f for f in result.faces if f.faceprint is not None),
                key=lambda f: float(
                    np.linalg.norm(
                        (np.array(f.detection.bbox_xyxy[:2]) + np.array(f.detection.bbox_xyxy[2:])) / 2 - centre
                    )
                ),
            )
            vector = None if face.faceprint is None else face.faceprint.vector
        cached[key_prefix + str(path)] = vector
        if number % 200 == 0:
            rate = number / (time.perf_counter() - start)
            print(f"  embedded {number}/{len(todo)} ({rate:.1f} images/s)", file=sys.stderr)
    if cache is not None and todo:
        keys = list(cached)
        dim = next((len(v) for v in cached.values() if v is not None), 128)
        vectors = np.stack([v if v is not None else np.zeros(dim, np.float32) for v in cached.values()])
        tmp = cache.with_name(cache.name + ".tmp.npz")
        np.savez(tmp, keys=np.array(keys), vectors=vectors.astype(np.float32))
        os.replace(tmp, cache)
    analyzer.close()
    for path in paths:
        out[str(path)] = cached[key_prefix + str(path)]
    return out


def lfw_benchmark(args: argparse.Namespace) -> None:
    from faceprint.gallery.search import MultiGalleryIndex
    from faceprint.gallery.sqlite import SqliteGallery
    from faceprint.models.catalog import DLIB_RESNET_ID, builtin_specs
    from faceprint.types import Faceprint

    images = args.data / "lfw-view1" / "images"
    if not images.is_dir():
        print(f"LFW View 1 not found under {args.data}; skipping the accuracy part")
        return
    mated, singles = _lfw_split(images, None if args.all else args.people, None if args.all else args.strangers)
    paths = [p for photos in mated.values() for p in photos] + singles
    print(
        f"LFW View 1: {len(mated)} enrolled persons, {len(paths) - len(mated) - len(singles)} mated probes, "
        f"{len(singles)} non-mated probes; embedding {len(paths)} images (flip={not args.no_flip}) …"
    )
    start = time.perf_counter()
    vectors = _embed_all(paths, args.cache, flip=not args.no_flip)
    print(f"  embedding took {time.perf_counter() - start:.0f} s (cache: {args.cache})")
    spec = builtin_specs()[DLIB_RESNET_ID]

    def faceprint(vector: np.ndarray) -> Faceprint:
        return Faceprint(vector, model_id=spec.id, contract_id=spec.contract_id, package_version="bench")

    import tempfile

    with tempfile.TemporaryDirectory() as tmp, SqliteGallery.create(Path(tmp) / "lfw.sqlite") as gallery:
        no_face_enrol = 0
        for name, photos in mated.items():
            vector = vectors[str(photos[0])]
            if vector is None:
                no_face_enrol += 1
                continue
            gallery.enroll(gallery.add_person(name, person_id=name).person_id, [faceprint(vector)])
        mated_probes = [(name, vectors[str(p)]) for name, photos in mated.items() for p in photos[1:]]
        enrolled = {person.person_id for person in gallery.persons()}
        mated_ok = [(name, v) for name, v in mated_probes if v is not None and name in enrolled]
        strangers = [v for v in (vectors[str(p)] for p in singles) if v is not None]
        print(
            f"  no face: {no_face_enrol} enrolment photos, "
            f"{sum(v is None for _, v in mated_probes)} mated probes, {len(singles) - len(strangers)} non-mated"
        )

        index = MultiGalleryIndex([gallery])
        start = time.perf_counter()
        mated_results = index.search([faceprint(v) for _, v in mated_ok], top_k=5, min_similarity=-1.0)
        stranger_results = index.search([faceprint(v) for v in strangers], top_k=1, min_similarity=-1.0)
        search_s = time.perf_counter() - start
    truth = [name for name, _ in mated_ok]
    rank1 = np.mean([r.matches[0].person_id == t for r, t in zip(mated_results, truth, strict=True)])
    rank5 = np.mean([t in {h.person_id for h in r.matches} for r, t in zip(mated_results, truth, strict=True)])
    best_mated = np.array([r.matches[0].similarity for r in mated_results])
    right_mated = np.array([r.matches[0].person_id == t for r, t in zip(mated_results, truth, strict=True)])
    best_stranger = np.array([r.matches[0].similarity for r in stranger_results])
    print(
        f"  gallery {index.person_count} persons; {len(mated_ok) + len(strangers)} probes searched in "
        f"{search_s * 1000:.0f} ms ({index.backend})"
    )
    print(f"  closed set: rank-1 {rank1:.2%}  rank-5 {rank5:.2%}  ({len(mated_ok)} mated probes)")
    one_to_one = spec.default_threshold if spec.default_threshold is not None else 0.88
    # `faceprint identify` defaults to the FAR 1e-3 threshold (a probe meets every enrolled person).
    default = spec.far_thresholds.get("1e-3", one_to_one)
    far1 = float(np.quantile(best_stranger, 0.99)) if len(best_stranger) else float("nan")
    print("  open set:   cut-off     FPIR (non-mated accepted)   TPIR (mated accepted as the right person)")
    cutoffs = (("1:1 thr", one_to_one), ("default", default), ("", 0.92), ("FPIR~1%", far1))
    for label, cut in cutoffs:
        fpir = float(np.mean(best_stranger >= cut)) if len(best_stranger) else float("nan")
        tpir = float(np.mean((best_mated >= cut) & right_mated))
        print(f"              {cut:.4f} {label:8s} {fpir:8.2%}                   {tpir:8.2%}")


# --- 2. scale ------------------------------------------------------------------------------------------


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scale_child(backend: str, size: int, queries: int) -> dict[str, Any]:
    """One measurement, in a fresh process."""
    from faceprint.gallery.index import PersonIndex, normalize_rows

    rng = np.random.default_rng(0)
    dim = 128
    baseline_rss = _rss_mb()
    vectors = np.empty((size, dim), np.float32)
    for start in range(0, size, 100_000):  # in chunks: float64 normals for 1e6 x 128 would be 1 GB
        stop = min(size, start + 100_000)
        vectors[start:stop] = rng.standard_normal((stop - start, dim), dtype=np.float32)
    owners = np.arange(size, dtype=np.int64) // 2
    data_rss = _rss_mb()
    start = time.perf_counter()
    index = PersonIndex(vectors, owners, backend=backend)  # type: ignore[arg-type]
    build_s = time.perf_counter() - start
    del vectors
    probes = normalize_rows(rng.standard_normal((queries, dim), dtype=np.float32))
    index.search(probes[:1], top_k=5)  # warm-up (FAISS thread pool, BLAS)
    single = []
    for row in range(queries):
        start = time.perf_counter()
        index.search(probes[row : row + 1], top_k=5)
        single.append(time.perf_counter() - start)
    batch = np.concatenate([probes] * max(1, 100 // queries))[:100]
    start = time.perf_counter()
    index.search(batch, top_k=5)
    batch_s = time.perf_counter() - start
    return {
        "backend": index.backend,
        "size": size,
        "build_s": build_s,
        "index_mb": index.nbytes / 2**20,
        "peak_rss_mb": _rss_mb(),
        "rss_before_mb": baseline_rss,
        "rss_with_data_mb": data_rss,
        "single_median_ms": statistics.median(single) * 1000,
        "single_p95_ms": float(np.quantile(single, 0.95)) * 1000,
        "batch100_ms": batch_s * 1000,
    }


def scale_benchmark(args: argparse.Namespace) -> None:
    from faceprint.gallery.index import FAISS_MIN_TEMPLATES, faiss_available

    backends = ["numpy"] + (["faiss"] if faiss_available() else [])
    if len(backends) == 1:
        print("faiss is not installed: numpy only (pip install 'faceprint[faiss]')")
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    print(
        f"\nSearch at scale: 128-d synthetic templates, 2 per person, top-5 persons; "
        f"{args.queries} single probes + one batch of 100; cores: {os.cpu_count()}, "
        f"threads: {args.threads if args.threads is not None else 'library default'}; "
        f"auto switches to FAISS above {FAISS_MIN_TEMPLATES:,} templates"
    )
    print(
        f"  {'backend':7s} {'templates':>10s} {'build':>8s} {'index':>9s} {'peak RSS':>9s} "
        f"{'1 probe median':>15s} {'p95':>8s} {'100 probes':>11s}"
    )
    for size in sizes:
        for backend in backends:
            env = dict(os.environ)
            if args.threads is not None:
                # BLAS and FAISS (OpenMP) read these at start-up; spinning extra threads on a busy, shared
                # machine costs 10-50x on a single probe, so the thread count is part of every figure.
                for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                    env[var] = str(args.threads)
            proc = subprocess.run(
                [sys.executable, __file__, "--scale-child", backend, str(size), "--queries", str(args.queries)],
                capture_output=True,
                text=True,
                check=False,
                cwd=REPO,
                env=env,
            )
            if proc.returncode != 0:
                print(f"  {backend:7s} {size:>10,d}  failed: {proc.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(
                f"  {r['backend']:7s} {size:>10,d} {r['build_s'] * 1000:>6.0f}ms {r['index_mb']:>7.1f}MB "
                f"{r['peak_rss_mb']:>7.0f}MB {r['single_median_ms']:>13.2f}ms {r['single_p95_ms']:>6.2f}ms "
                f"{r['batch100_ms']:>9.1f}ms"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path(os.environ.get("FACEPRINT_TEST_DATA", REPO.parent / "shared" / "data"))
    )
    parser.add_argument("--people", type=int, default=300, help="enrolled persons (with 2+ photos)")
    parser.add_argument("--strangers", type=int, default=300, help="non-mated probes (single-photo persons)")
    parser.add_argument("--all", action="store_true", help="every View 1 image (about 5,000; slow on 2 cores)")
    parser.add_argument("--no-flip", action="store_true", help="embed without the mirror average")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/faceprint-lfw-view1-embeddings.npz"))
    parser.add_argument("--sizes", default="1e4,5e4,1e5,1e6")
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="BLAS / OpenMP threads of the search processes")
    parser.add_argument("--skip-lfw", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--scale-child", nargs=2, metavar=("BACKEND", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scale_child:
        print(json.dumps(scale_child(args.scale_child[0], int(args.scale_child[1]), args.queries)))
        return
    if not args.skip_lfw:
        lfw_benchmark(args)
    if not args.skip_scale:
        scale_benchmark(args)


if __name__ == "__main__":
    main()
