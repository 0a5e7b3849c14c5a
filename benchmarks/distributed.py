"""The pairs job on Dask: 1 and 2 workers on loopback, beside the local process pool (the baseline).

LFW View 1 DevTest pairs (genuine and impostor rows interleaved) are packed as a ``.tgz`` and scored by
``run_pairs_job`` three ways, each with the real dlib pipeline:

- ``processes``: the local process pool (``--workers`` processes, default 2) — the baseline;
- ``dask x1`` / ``dask x2``: a real ``dask scheduler`` and one or two ``dask worker --nthreads 1``
  processes on 127.0.0.1, through ``DaskExecutor`` (``--executor dask://127.0.0.1:PORT``).

For each: wall time (including the workers' model loads), photos per second, and the SHA-256 of the
output archive, which must be the same for all three.

    python benchmarks/distributed.py [--pairs 300] [--workers 2] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# This script is named like the ``distributed`` package and Python puts its folder first on the path:
# drop it, so that ``import distributed`` (inside faceprint.execute.dask) finds Dask's.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def _pairs(data: Path, count: int) -> list[tuple[str, str]]:
    from faceprint.evaluate import read_pairs_list

    pairs = read_pairs_list(data / "lfw-view1" / "pairsDevTest.txt")
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


@contextlib.contextmanager
def dask_cluster(workers: int, tmp: Path) -> Iterator[str]:
    """A real scheduler and ``workers`` single-thread worker processes on 127.0.0.1; yields ``dask://…``."""
    dask = str(Path(sys.executable).with_name("dask"))
    info = tmp / f"scheduler-{workers}.json"
    quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    scheduler = subprocess.Popen(
        [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(info)],
        **quiet,
    )
    procs = [scheduler]
    try:
        while not info.exists() or not info.read_text().strip():
            if scheduler.poll() is not None:
                raise SystemExit("the dask scheduler did not start")
            time.sleep(0.1)
        for i in range(workers):
            procs.append(
                subprocess.Popen(
                    [
                        dask,
                        "worker",
                        "--scheduler-file",
                        str(info),
                        "--nthreads",
                        "1",
                        "--no-dashboard",
                        "--name",
                        f"w{i}",
                    ],
                    **quiet,
                )
            )
        yield "dask://" + json.loads(info.read_text())["address"].removeprefix("tcp://")
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)


def run(archive: Path, out: Path, *, executor: str, workers: int) -> dict[str, Any]:
    from faceprint.batch.pairs import PairsOptions, run_pairs_job

    start = time.perf_counter()
    if executor.startswith("dask://"):
        from faceprint.execute.dask import DaskExecutor

        with DaskExecutor.from_url(executor) as dask:
            dask.client.wait_for_workers(workers, timeout=120)
            result = run_pairs_job([archive], out, options=PairsOptions(quiet=True, executor=dask))
    else:
        result = run_pairs_job([archive], out, options=PairsOptions(quiet=True, workers=workers, executor="processes"))
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "rows": result.rows,
        "scored": result.scored,
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2, help="processes of the local pool")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    pairs = _pairs(args.data, args.pairs)
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        archive = tmp / "devtest.tgz"
        images = _build_tgz(args.data, pairs, archive)
        results: dict[str, dict[str, Any]] = {}
        results[f"processes x{args.workers}"] = run(
            archive, tmp / "local.tar.gz", executor="processes", workers=args.workers
        )
        for count in (1, 2):
            with dask_cluster(count, tmp) as url:
                results[f"dask x{count}"] = run(archive, tmp / f"dask{count}.tar.gz", executor=url, workers=count)
    print(f"LFW View 1 DevTest as a .tgz: {len(pairs)} pairs over {images} photos; real dlib pipeline")
    print(f"{'':16}{'seconds':>10}{'photos/s':>10}{'scored':>12}  archive sha256")
    digests = set()
    for label, result in results.items():
        digests.add(result["sha256"])
        print(
            f"{label:16}{result['seconds']:>10.1f}{images / result['seconds']:>10.1f}"
            f"{result['scored']:>7}/{result['rows']:<5}  {result['sha256'][:16]}"
        )
    print("archives identical" if len(digests) == 1 else "ARCHIVES DIFFER")


if __name__ == "__main__":
    main()
