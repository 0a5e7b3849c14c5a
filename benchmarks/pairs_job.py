"""Batch pair scoring throughput: LFW View 1 DevTest packed as a .tgz, beside a naive baseline.

faceprint: ``run_pairs_job`` on the archive (every unique photo decoded and embedded once, worker pool).
Baseline: the face_recognition tutorial's way, per pair: load both photos, ``face_encodings`` each,
``face_distance`` — every photo is embedded again for every pair it is in. The baseline is slow, so by
default it runs on the first ``--baseline-pairs`` rows and its rate is reported per pair.

Each side runs in its own subprocess (peak RSS includes its worker processes).

    python benchmarks/pairs_job.py [--pairs 1000] [--baseline-pairs 100] [--workers N]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _pairs(data: Path, count: int) -> list[tuple[str, str]]:
    from faceprint.evaluate import read_pairs_list

    pairs = read_pairs_list(data / "lfw-view1" / "pairsDevTest.txt")
    # Interleave genuine and impostor rows so a prefix holds both kinds.
    genuine = [p for p in pairs if p.is_same]
    impostor = [p for p in pairs if not p.is_same]
    mixed = [p for pair in zip(genuine, impostor, strict=False) for p in pair]
    return [(p.path_a, p.path_b) for p in mixed[:count]]


def _build_tgz(data: Path, pairs: list[tuple[str, str]], out: Path) -> int:
    images = sorted({name for pair in pairs for name in pair})
    table = io.StringIO()
    csv.writer(table, lineterminator="\n").writerows(pairs)
    with tarfile.open(out, "w:gz") as tar:
        for name in images:
            tar.add(data / "lfw-view1" / "images" / name, arcname=name)
        info = tarfile.TarInfo("pairs.csv")
        payload = table.getvalue().encode()
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return len(images)


def _peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) / 1024


def run_faceprint(archive: Path, workers: int | None) -> dict[str, Any]:
    from faceprint.batch.pairs import PairsOptions, run_pairs_job

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = run_pairs_job(
            [archive], Path(tmp) / "results.tar.gz", options=PairsOptions(workers=workers, quiet=True)
        )
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows": result.rows, "scored": result.scored, "peak_rss_mb": _peak_rss_mb()}


def run_baseline(data: Path, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    try:
        import face_recognition  # type: ignore[import-not-found]
    except Exception as err:  # any import failure means "baseline unavailable"
        return {"error": f"face_recognition unavailable ({err}); pip install --no-deps face_recognition"}
    root = data / "lfw-view1" / "images"
    scored = 0
    start = time.perf_counter()
    for name_a, name_b in pairs:
        encodings = [
            face_recognition.face_encodings(face_recognition.load_image_file(str(root / n))) for n in (name_a, name_b)
        ]
        if encodings[0] and encodings[1]:
            face_recognition.face_distance([encodings[0][0]], encodings[1][0])
            scored += 1
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows": len(pairs), "scored": scored, "peak_rss_mb": _peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--baseline-pairs", type=int, default=100)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--child", choices=["faceprint", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--archive", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "faceprint":
        sys.stdout.write(json.dumps(run_faceprint(args.archive, args.workers)))
        return
    if args.child == "baseline":
        sys.stdout.write(json.dumps(run_baseline(args.data, _pairs(args.data, args.baseline_pairs))))
        return

    pairs = _pairs(args.data, args.pairs)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "devtest.tgz"
        images = _build_tgz(args.data, pairs, archive)
        results: dict[str, dict[str, Any]] = {}
        for side in ("faceprint", "baseline"):
            command = [sys.executable, __file__, "--child", side, "--archive", str(archive), "--data", str(args.data)]
            command += ["--pairs", str(args.pairs), "--baseline-pairs", str(args.baseline_pairs)]
            if args.workers is not None:
                command += ["--workers", str(args.workers)]
            proc = subprocess.run(command, capture_output=True, text=True, check=False)
            results[side] = json.loads(proc.stdout) if proc.returncode == 0 else {"error": proc.stderr[-800:]}

    print(f"LFW View 1 DevTest as a .tgz: {len(pairs)} pairs over {images} photos ({archive.name})")
    print(f"{'':22}{'faceprint pairs':>20}{'face_recognition/pair':>24}")
    fp, base = results["faceprint"], results["baseline"]

    def cell(result: dict[str, Any], key: str) -> str:
        if "error" in result:
            return "error"
        if key == "pairs/s":
            return f"{result['rows'] / result['seconds']:.1f}"
        if key == "images/s":
            photos = images if result is fp else 2 * result["rows"]
            return f"{photos / result['seconds']:.1f}"
        if key == "rows":
            return f"{result['scored']}/{result['rows']}"
        return f"{result[key]:.0f}" if key == "peak_rss_mb" else f"{result[key]:.1f}"

    for key in ("rows", "seconds", "pairs/s", "images/s", "peak_rss_mb"):
        print(f"{key:22}{cell(fp, key):>20}{cell(base, key):>24}")
    print("images/s: faceprint counts unique photos; the baseline decodes and embeds 2 photos per pair")
    for side, result in results.items():
        if "error" in result:
            print(f"{side}: {result['error']}")


if __name__ == "__main__":
    main()
