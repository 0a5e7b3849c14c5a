"""``faceprint pairs`` at scale: 10k, 100k and 1M rows over 50 photos; time and peak RSS per size.

The photos are 50 real LFW View 1 images (``../shared/data/lfw-view1``) embedded by the real dlib pipeline,
or with ``--fake`` 50 synthetic photos and the weight-free fake pipeline (the row-side cost, parse,
resolve, score, write, is the same either way: each photo is embedded once whatever the row count).

Baseline, measured in the same run on the same ``pairs.csv``: Python's ``csv`` module alone reading every
row and writing ``file_a,file_b,probability`` back (the floor any pairs job pays for the CSV itself).

Each measurement runs in a subprocess of its own, so peak RSS is that of one job (workers included).

    python benchmarks/pairs_scale.py [--sizes 10000 100000 1000000] [--fake] [--workers 1]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PHOTOS = 50


def _photos(folder: Path, fake: bool) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    if fake:
        from faceprint.testing import make_face_png

        names = [f"{i:02d}.png" for i in range(PHOTOS)]
        for i, name in enumerate(names):
            (folder / name).write_bytes(make_face_png((i * 5, 250 - i * 5, (i * 37) % 256), size_wh=(64, 64)))
        return names
    source = REPO.parent / "shared" / "data" / "lfw-view1" / "images"
    if not source.is_dir():
        sys.exit(f"real photos not found at {source}; use --fake")
    every = sorted(source.rglob("*.jpg"))
    picked = every[:: max(1, len(every) // PHOTOS)][:PHOTOS]  # spread over the set: 50 different people
    names = []
    for index, path in enumerate(picked):
        name = f"{index:02d}_{path.name}"
        (folder / name).write_bytes(path.read_bytes())
        names.append(name)
    return names


def _write_pairs(folder: Path, names: list[str], rows: int) -> None:
    with (folder / "pairs.csv").open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["left", "right", "case"])
        count = len(names)
        for row in range(rows):
            writer.writerow([names[row % count], names[(row * 7 + 1) % count], f"c{row}"])


def _peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) / 1024


def _run_faceprint(dataset: str, out: str, fake: bool, workers: int) -> dict[str, object]:
    from faceprint.batch.pairs import PairsOptions, run_pairs_job

    factory = None
    if fake:
        from faceprint.testing import fake_pipeline_factory

        factory = fake_pipeline_factory
    options = PairsOptions(workers=workers, quiet=True, details=True)
    start = time.perf_counter()
    result = run_pairs_job([Path(dataset)], Path(out), options=options, pipeline_factory=factory)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows": result.rows, "scored": result.scored, "peak_rss_mb": _peak_rss_mb()}


def _run_baseline(dataset: str, out: str) -> dict[str, object]:
    start = time.perf_counter()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    rows = 0
    with (Path(dataset) / "pairs.csv").open(newline="") as handle:
        for cells in csv.reader(handle):
            writer.writerow([cells[0], cells[1], "50.0%"])
            rows += 1
    Path(out).write_text(buffer.getvalue())
    return {"seconds": time.perf_counter() - start, "rows": rows - 1, "peak_rss_mb": _peak_rss_mb()}


def _child(kind: str, dataset: Path, out: Path, fake: bool, workers: int) -> dict[str, object]:
    args = [sys.executable, __file__, "--child", kind, str(dataset), str(out), "--workers", str(workers)]
    if fake:
        args.append("--fake")
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{kind} failed: {done.stderr[-2000:]}")
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--fake", action="store_true", help="synthetic photos and the fake pipeline")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--child", nargs=3, metavar=("KIND", "DATASET", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        kind, dataset, out = args.child
        if kind == "baseline":
            measured = _run_baseline(dataset, out)
        else:
            measured = _run_faceprint(dataset, out, args.fake, args.workers)
        print(json.dumps(measured))
        return

    photos = "50 synthetic photos, fake pipeline" if args.fake else "50 LFW View 1 photos, real dlib pipeline"
    print(f"pairs_scale: {photos}, workers={args.workers}")
    header = ("rows", "faceprint s", "µs/row", "peak RSS MB", "csv-only s", "csv RSS MB")
    print("  ".join(f"{name:>{width}}" for name, width in zip(header, (9, 11, 7, 11, 10, 10), strict=True)))
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        names = _photos(root / "ds", args.fake)
        for size in args.sizes:
            _write_pairs(root / "ds", names, size)
            ours = _child("faceprint", root / "ds", root / "r.tar.gz", args.fake, args.workers)
            base = _child("baseline", root / "ds", root / "baseline.csv", args.fake, args.workers)
            assert ours["rows"] == size and ours["scored"] == size, ours
            seconds = float(ours["seconds"])  # type: ignore[arg-type]
            print(
                f"{size:>9}  {seconds:>11.1f}  {seconds / size * 1e6:>7.1f}  {ours['peak_rss_mb']:>11.0f}"
                f"  {float(base['seconds']):>10.2f}  {base['peak_rss_mb']:>10.0f}",  # type: ignore[arg-type]
                flush=True,
            )


if __name__ == "__main__":
    main()
