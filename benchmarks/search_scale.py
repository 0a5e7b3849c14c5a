"""Search at scale: 1e5 and 1e6 templates made from real LFW faceprints, in process and in PostgreSQL.

**Data.** The 4,992 LFW View 1 photos, embedded once by the batch engine (cached by
``benchmarks/calibration_cache.py`` in ``.cache/calibration/lfw.npz``; this script runs it when the cache is
missing). A gallery of N templates holds every real faceprint plus perturbed copies (a real unit vector
moved along the difference of two other real faceprints, cosine ~0.91 to its source: another face on
the faceprint manifold). Probes are gallery templates moved the same way by less (cosine ~0.986), so each
probe's planted nearest neighbour is known; the exact numpy top-10 is the ground truth for recall.

**Methods** (top-10 templates per probe, cosine):

- ``numpy``: the exact in-process index (``faceprint.gallery.index.NumpyIndex``) — the baseline;
- ``faiss-flat``: FAISS exact inner product; ``faiss-hnsw`` (M=32) at several efSearch; ``faiss-ivf``
  (IVFFlat, nlist ~ 4 sqrt N) at several nprobe;
- ``pg-exact`` / ``pg-hnsw``: a :class:`~faceprint.gallery.pgvector.PgvectorGallery` (one person per
  template) searched through ``nearest_persons`` — in the database, candidates re-ranked exactly — by a
  sequential scan, or by the HNSW index (m=16, ef_construction=64) at several ``hnsw.ef_search``.

For each: build time, memory (index bytes in process; table + index size in PostgreSQL; peak RSS of this
process), top-10 latency for one probe per call and for batches, recall@1 and recall@10 against exact.

    python benchmarks/search_scale.py [--sizes 1e5,1e6] [--probes 200] [--batch 100]
        [--methods numpy,faiss-flat,faiss-hnsw,faiss-ivf,pg-exact,pg-hnsw] [--ef 40,100,200]
        [--database-url postgresql://…] [--json results.json]

Without ``--database-url`` (or ``FACEPRINT_DATABASE_URL``) a throwaway ``pgserver`` PostgreSQL is started
under ``/tmp``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
LFW_CACHE = REPO / ".cache" / "calibration" / "lfw.npz"
TOP = 10


# --- data ------------------------------------------------------------------------------------------------


def lfw_faceprints() -> np.ndarray:
    """The real LFW View 1 faceprints (unit rows), embedding them once through the engine if not cached."""
    if not LFW_CACHE.exists():
        print("embedding LFW View 1 once (benchmarks/calibration_cache.py lfw) ...", flush=True)
        subprocess.run(
            [sys.executable, str(REPO / "benchmarks" / "calibration_cache.py"), "--workers", "2", "lfw"], check=True
        )
    vectors = np.load(LFW_CACHE)["vectors"].astype(np.float32)
    vectors = vectors[np.linalg.norm(vectors, axis=1) > 0]
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _perturb(unit: np.ndarray, amount: float, real: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``unit`` moved along the difference of two random real faceprints, renormalised.

    Faceprints fill a narrow cone (two LFW people have cosine ~0.84 on average): moving along differences
    of real faces keeps a copy on that manifold, like another person or another photo. Isotropic noise
    would push copies off it into directions no face takes, where HNSW graphs behave differently (measured:
    pgvector HNSW recall@1 0.85 at 1e5 with isotropic copies, whatever ef_search).
    """
    j = rng.integers(0, len(real), size=len(unit))
    k = rng.integers(0, len(real), size=len(unit))
    out = unit + amount * (real[j] - real[k])
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def make_gallery(real: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """Every real faceprint, then perturbed copies (cosine ~0.91 to their source) up to ``size`` rows."""
    rng = np.random.default_rng(seed)
    parts = [real[: min(size, len(real))]]
    left = size - len(parts[0])
    while left > 0:
        take = min(left, 200_000)
        parts.append(_perturb(real[rng.integers(0, len(real), size=take)], 0.8, real, rng))
        left -= take
    return np.ascontiguousarray(np.concatenate(parts))


def make_probes(gallery: np.ndarray, real: np.ndarray, count: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(probes, planted)``: noisy copies (cosine ~0.986) of random gallery rows, and those rows."""
    rng = np.random.default_rng(seed)
    planted = rng.choice(gallery.shape[0], size=count, replace=False)
    return _perturb(gallery[planted], 0.3, real, rng), planted


# --- measuring -------------------------------------------------------------------------------------------

Searcher = Callable[[np.ndarray], np.ndarray]
"""(m, d) unit probes -> (m, TOP) gallery rows, best first."""


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(search: Searcher, probes: np.ndarray, truth: np.ndarray, *, batch: int, singles: int) -> dict[str, Any]:
    """Latency (single probe per call, and batched) and recall@1/@10 against the exact ``truth`` rows."""
    search(probes[:2])  # warm up (caches, lazy inits)
    single_ms = []
    for i in range(min(singles, len(probes))):
        start = time.perf_counter()
        search(probes[i : i + 1])
        single_ms.append((time.perf_counter() - start) * 1000)
    found = []
    start = time.perf_counter()
    for begin in range(0, len(probes), batch):
        found.append(search(probes[begin : begin + batch]))
    batched_ms = (time.perf_counter() - start) * 1000 / len(probes)
    rows = np.concatenate(found)
    recall1 = float(np.mean(rows[:, 0] == truth[:, 0]))
    recall10 = float(np.mean([len(set(a.tolist()) & set(b.tolist())) / TOP for a, b in zip(rows, truth, strict=True)]))
    return {
        "single_ms_p50": float(np.percentile(single_ms, 50)),
        "single_ms_p95": float(np.percentile(single_ms, 95)),
        "batched_ms_per_probe": batched_ms,
        "recall_at_1": recall1,
        "recall_at_10": recall10,
        "singles": len(single_ms),
        "probes": len(probes),
    }


def in_process_methods(gallery: np.ndarray, args: argparse.Namespace) -> Iterator[tuple[str, Callable[[], Any]]]:
    """``(name, build)`` pairs; ``build()`` returns ``(searcher, index bytes)``."""
    from faceprint.gallery.index import NumpyIndex

    if "numpy" in args.methods:

        def numpy_build() -> tuple[Searcher, int]:
            index = NumpyIndex(gallery)
            return (lambda q: index.search(q, TOP)[1]), index.nbytes

        yield "numpy", numpy_build
    try:
        import faiss
    except ImportError:
        print("faiss not installed: FAISS methods skipped")
        return
    d = gallery.shape[1]
    if "faiss-flat" in args.methods:

        def flat_build() -> tuple[Searcher, int]:
            index = faiss.IndexFlatIP(d)
            index.add(gallery)
            return (lambda q: index.search(q, TOP)[1]), gallery.nbytes

        yield "faiss-flat", flat_build
    if "faiss-hnsw" in args.methods:
        holder: dict[str, Any] = {}

        def hnsw_build() -> tuple[Searcher, int]:
            index = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 40
            index.add(gallery)
            holder["index"] = index
            return (lambda q: index.search(q, TOP)[1]), gallery.nbytes + gallery.shape[0] * 32 * 2 * 4

        yield "faiss-hnsw ef=16", hnsw_build
        for ef in args.ef:

            def hnsw_at(ef: int = ef) -> tuple[Searcher, int]:
                index = holder["index"]

                def run(q: np.ndarray) -> np.ndarray:
                    index.hnsw.efSearch = ef
                    return index.search(q, TOP)[1]

                return run, 0

            yield f"faiss-hnsw ef={ef}", hnsw_at
    if "faiss-ivf" in args.methods:
        ivf: dict[str, Any] = {}

        def ivf_build() -> tuple[Searcher, int]:
            nlist = int(4 * np.sqrt(gallery.shape[0]))
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
            sample = gallery[np.random.default_rng(2).choice(gallery.shape[0], min(len(gallery), 40 * nlist), False)]
            index.train(sample)
            index.add(gallery)
            ivf["index"], ivf["quantizer"] = index, quantizer
            return (lambda q: index.search(q, TOP)[1]), gallery.nbytes + nlist * d * 4

        yield "faiss-ivf nprobe=1", ivf_build
        for nprobe in (8, 32):

            def ivf_at(nprobe: int = nprobe) -> tuple[Searcher, int]:
                index = ivf["index"]

                def run(q: np.ndarray) -> np.ndarray:
                    index.nprobe = nprobe
                    return index.search(q, TOP)[1]

                return run, 0

            yield f"faiss-ivf nprobe={nprobe}", ivf_at


# --- PostgreSQL ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def database(url: str | None) -> Iterator[str]:
    if url is not None:
        yield url
        return
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        root = Path(tempfile.mkdtemp(prefix="faceprint-search-scale-"))
        server = pgserver.get_server(root, cleanup_mode="delete")
    try:
        # The default 128 MB of shared buffers cannot hold a 1e6 HNSW graph; give it room, as a server would.
        server.psql("ALTER SYSTEM SET shared_buffers = '3GB'; ALTER SYSTEM SET max_parallel_maintenance_workers = 2;")
        from pgserver._commands import pg_ctl

        pg_ctl(["-w", "restart"], pgdata=server.pgdata, user=server.system_user, timeout=60)
        yield server.get_uri()
    finally:
        server.cleanup()


def load_pg_gallery(url: str, gallery: np.ndarray, name: str) -> tuple[Any, float]:
    """A PgvectorGallery holding ``gallery`` (person ``t<row>`` per row), bulk-loaded by COPY; load seconds."""
    from faceprint.gallery.pgvector import PgvectorGallery
    from faceprint.types import Faceprint

    with contextlib.suppress(Exception):
        PgvectorGallery.open(url, name).drop()
    pg = PgvectorGallery.create(url, name, candidate_factor=1)
    seed = pg.add_person("seed", person_id="seed")
    pg.enroll(
        seed.person_id,
        [Faceprint(gallery[0], model_id="dlib-resnet-v1", contract_id="dlib-resnet-v1:bench", package_version="0")],
    )
    pg.remove_person("seed")
    pg.drop_index()
    start = time.perf_counter()
    conn: Any = pg._conn  # a benchmark may bulk-load behind the API: the per-template path is not under test
    s = pg.schema
    now = "2026-01-01T00:00:00+00:00"
    with conn.transaction(), conn.cursor() as cur:
        with cur.copy(f"COPY {s}.persons (person_id, name, is_unknown, created_at, updated_at) FROM STDIN") as copy:
            for row in range(gallery.shape[0]):
                copy.write_row((f"t{row}", f"t{row}", False, now, now))
        with cur.copy(
            f"COPY {s}.templates (template_id, person_id, embedding, model_id, package_version, created_at) "
            "FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "text", "vector", "text", "text", "text"])
            for row in range(gallery.shape[0]):
                copy.write_row((row, f"t{row}", gallery[row], "dlib-resnet-v1", "0", now))
    conn.execute(f"ANALYZE {s}.templates")
    return pg, time.perf_counter() - start


def pg_sizes_mb(pg: Any) -> dict[str, float]:
    conn: Any = pg._conn
    table = conn.execute("SELECT pg_total_relation_size(%s)", (f"{pg.schema}.templates",)).fetchone()[0]
    index = conn.execute("SELECT COALESCE(pg_relation_size(to_regclass(%s)), 0)", (f"{pg.schema}.templates_hnsw",))
    return {"table_and_indexes_mb": table / 2**20, "hnsw_index_mb": index.fetchone()[0] / 2**20}


def pg_server_ms(pg: Any, probes: np.ndarray, *, exact: bool, ef: int, count: int = 20) -> float:
    """Median execution time inside PostgreSQL (EXPLAIN ANALYZE) of one probe's candidate query.

    Beside the client-side latency it separates the engine's work from the round trips and the client,
    which on a loaded 2-core machine can dominate.
    """
    conn: Any = pg._conn
    times = []
    for probe in probes[:count]:
        with conn.transaction():
            conn.execute(f"SET LOCAL hnsw.ef_search = {max(ef, 16)}")
            order = "(t.embedding <=> q.v) + 0" if exact else "t.embedding <=> q.v"  # as nearest_persons asks
            plan = conn.execute(
                "EXPLAIN (ANALYZE, FORMAT JSON) SELECT q.i, c.person_id, p.name, p.is_unknown, c.embedding "
                "FROM unnest(%s::vector[]) WITH ORDINALITY AS q(v, i) CROSS JOIN LATERAL (SELECT t.person_id, "
                f"t.embedding FROM {pg.schema}.templates t ORDER BY {order} LIMIT 16) c "
                f"JOIN {pg.schema}.persons p ON p.person_id = c.person_id",
                ([probe],),
            ).fetchone()[0]
        times.append(float(plan[0]["Execution Time"]))
    return float(np.median(times))


def pg_searcher(pg: Any, *, exact: bool, ef: int | None) -> Searcher:
    def run(q: np.ndarray) -> np.ndarray:
        hits = pg.nearest_persons(q, top_k=TOP, exact=exact, ef_search=ef)
        out = np.full((len(hits), TOP), -1, dtype=np.int64)
        for i, row in enumerate(hits):
            values = [int(c.person_id[1:]) for c in row]
            out[i, : len(values)] = values
        return out

    return run


# --- main ------------------------------------------------------------------------------------------------


def run_size(size: int, real: np.ndarray, args: argparse.Namespace, url: str | None) -> list[dict[str, Any]]:
    from faceprint.gallery.index import NumpyIndex

    gallery = make_gallery(real, size)
    probes, planted = make_probes(gallery, real, args.probes)
    truth = NumpyIndex(gallery).search(probes, TOP)[1]
    planted_hit = float(np.mean(truth[:, 0] == planted))
    print(f"\n=== {size:,} templates ({len(real):,} real LFW faceprints + perturbed copies), {len(probes)} probes")
    print(f"exact top-1 is the planted neighbour for {planted_hit:.3f} of the probes")
    rows: list[dict[str, Any]] = []

    def report(name: str, build_s: float | None, memory: dict[str, float], result: dict[str, Any]) -> None:
        row = {"size": size, "method": name, "build_s": build_s, **memory, **result, "peak_rss_mb": peak_rss_mb()}
        rows.append(row)
        build = "" if build_s is None else f"{build_s:8.1f}"
        mem = " ".join(f"{k}={v:.0f}" for k, v in memory.items())
        print(
            f"{name:22s} build_s={build:>8s} single p50={result['single_ms_p50']:8.2f} ms "
            f"p95={result['single_ms_p95']:8.2f} ms  batched={result['batched_ms_per_probe']:8.3f} ms/probe  "
            f"R@1={result['recall_at_1']:.3f} R@10={result['recall_at_10']:.3f}  {mem}"
            + (f" in-db p50={result['server_ms_p50']:.2f} ms" if "server_ms_p50" in result else ""),
            flush=True,
        )
        if args.json is not None:
            args.json.write_text(json.dumps(rows, indent=1))

    for name, build in in_process_methods(gallery, args):
        start = time.perf_counter()
        searcher, nbytes = build()
        build_s = time.perf_counter() - start
        memory = {"index_mb": nbytes / 2**20} if nbytes else {}
        report(
            name,
            build_s if nbytes else None,
            memory,
            measure(searcher, probes, truth, batch=args.batch, singles=args.singles),
        )

    if url is not None and ("pg-exact" in args.methods or "pg-hnsw" in args.methods):
        pg, load_s = load_pg_gallery(url, gallery, f"bench-{size}")
        try:
            sizes = pg_sizes_mb(pg)
            if "pg-exact" in args.methods:
                # A sequential scan per probe: few probes at 1e6, they take long.
                count = args.probes if size <= 100_000 else min(args.probes, 20)
                report(
                    "pg-exact",
                    load_s,
                    sizes,
                    measure(
                        pg_searcher(pg, exact=True, ef=None),
                        probes[:count],
                        truth[:count],
                        batch=min(args.batch, count),
                        singles=min(args.singles, 10),
                    )
                    | {"server_ms_p50": pg_server_ms(pg, probes, exact=True, ef=0, count=5)},
                )
            if "pg-hnsw" in args.methods:
                start = time.perf_counter()
                pg.build_index(m=16, ef_construction=64, maintenance_work_mem=args.maintenance_work_mem)
                build_s = time.perf_counter() - start
                sizes = pg_sizes_mb(pg)
                for i, ef in enumerate(args.ef):
                    report(
                        f"pg-hnsw ef={ef}",
                        build_s if i == 0 else None,
                        sizes,
                        measure(
                            pg_searcher(pg, exact=False, ef=ef), probes, truth, batch=args.batch, singles=args.singles
                        )
                        | {"server_ms_p50": pg_server_ms(pg, probes, exact=False, ef=ef)},
                    )
        finally:
            if not args.keep:
                pg.drop()
            else:
                pg.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1e5,1e6")
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--singles", type=int, default=50, help="probes timed one per call")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--methods", default="numpy,faiss-flat,faiss-hnsw,faiss-ivf,pg-exact,pg-hnsw")
    parser.add_argument("--ef", default="40,100,200")
    parser.add_argument("--database-url", default=os.environ.get("FACEPRINT_DATABASE_URL"))
    parser.add_argument("--maintenance-work-mem", default="2GB")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark galleries in the database")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.methods = set(args.methods.split(","))
    args.ef = [int(x) for x in args.ef.split(",")]
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    real = lfw_faceprints()
    print(f"{len(real):,} real LFW View 1 faceprints, {real.shape[1]}-d; {os.cpu_count()} CPU cores")
    wants_pg = bool({"pg-exact", "pg-hnsw"} & args.methods)
    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(database(args.database_url)) if wants_pg else None
        for size in sizes:
            rows.extend(run_size(size, real, args, url))
            if args.json is not None:
                args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
