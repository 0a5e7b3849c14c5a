"""Confidential-mode costs, each beside its baseline in the same run.

- gallery encryption: enrol, first search (snapshot: every template read and, encrypted, decrypted) and a
  warm search, for N templates of 128 floats, clear vs AES-256-GCM;
- key rotation: templates re-encrypted per second;
- audit: MB/s over random bytes and over an encrypted gallery, beside sha256 over the same bytes (a lower
  bound of reading and touching every byte once).

Usage:
    .venv/bin/python benchmarks/confidential.py [--templates 20000] [--audit-mib 128]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from faceprint.audit import audit_data_dir
from faceprint.crypto import EncryptionKey, RecordCipher
from faceprint.gallery.sqlite import SqliteGallery
from faceprint.types import Faceprint


def _faceprints(count: int) -> list[Faceprint]:
    vectors = np.random.default_rng(0).normal(size=(count, 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [Faceprint(v, model_id="m", contract_id="m:1", package_version="0") for v in vectors]


def _gallery_run(folder: Path, prints: list[Faceprint], cipher: RecordCipher | None) -> dict[str, float]:
    path = folder / ("sealed.sqlite" if cipher is not None else "clear.sqlite")
    start = time.perf_counter()
    with SqliteGallery.create(path, cipher=cipher) as gallery:
        per_person = 5
        for p in range(0, len(prints), per_person):
            person = gallery.add_person(f"Person {p // per_person}")
            gallery.enroll(person.person_id, prints[p : p + per_person])
    enrol_s = time.perf_counter() - start
    probes = prints[:32]
    with SqliteGallery.open(path, cipher=cipher) as gallery:
        start = time.perf_counter()
        gallery.search(probes, top_k=3, min_similarity=0.5)
        first_s = time.perf_counter() - start
        start = time.perf_counter()
        gallery.search(probes, top_k=3, min_similarity=0.5)
        warm_s = time.perf_counter() - start
    return {"enrol_s": enrol_s, "first_search_s": first_s, "warm_search_s": warm_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--templates", type=int, default=20000)
    parser.add_argument("--audit-mib", type=int, default=128)
    args = parser.parse_args()
    prints = _faceprints(args.templates)
    key = EncryptionKey.generate()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clear = _gallery_run(folder, prints, None)
        sealed = _gallery_run(folder, prints, RecordCipher(key))
        print(f"gallery of {args.templates} templates (128-d)      clear      encrypted")
        for name in ("enrol_s", "first_search_s", "warm_search_s"):
            print(f"  {name:<16} {clear[name]:>10.3f} s {sealed[name]:>10.3f} s  (x{sealed[name] / clear[name]:.2f})")

        new = EncryptionKey.generate()
        with SqliteGallery.open(folder / "sealed.sqlite", cipher=RecordCipher(new, previous_keys=[key])) as gallery:
            start = time.perf_counter()
            summary = gallery.rotate_encryption()
            rotate_s = time.perf_counter() - start
        print(
            f"rotation: {summary.templates_rotated} templates in {rotate_s:.2f} s "
            f"({summary.templates_rotated / rotate_s:,.0f}/s)"
        )

        (folder / "clear.sqlite").unlink()
        random_file = folder / "random.bin"
        random_file.write_bytes(os.urandom(args.audit_mib << 20))
        data = random_file.read_bytes() + (folder / "sealed.sqlite").read_bytes()
        # Best of 3 each, interleaved: a shared, loaded machine swings single timings by several times.
        sha_s = audit_s = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            hashlib.sha256(data).hexdigest()
            sha_s = min(sha_s, time.perf_counter() - start)
            start = time.perf_counter()
            report = audit_data_dir(folder)
            audit_s = min(audit_s, time.perf_counter() - start)
        mib = report.bytes_scanned / (1 << 20)
        print(
            f"audit of {mib:.0f} MiB (random + encrypted gallery): {mib / audit_s:.0f} MiB/s, "
            f"clean={report.clean}; baseline sha256 of the same bytes: {len(data) / (1 << 20) / sha_s:.0f} MiB/s"
        )


if __name__ == "__main__":
    main()
