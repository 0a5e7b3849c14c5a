"""End-to-end accuracy on LFW View 1 beside the face_recognition library, in one run.

faceprint: the default pipeline (cheap-first detection cascade, primary face, mirror averaging, ONNX),
decided by the shipped threshold (fitted on DevTrain). face_recognition: what its README does —
``face_encodings(load_image_file(path))[0]`` and ``face_distance <= 0.6`` — a photo where it finds no face
makes its pairs wrong (they cannot be decided), and the count is printed.

    python benchmarks/lfw_accuracy.py [--split DevTest] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from faceprint.analyze import AnalyzeItem, Analyzer
from faceprint.compare import cosine_similarity
from faceprint.evaluate import read_pairs_list

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=["DevTrain", "DevTest"], default="DevTest")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()
    root = args.data / "lfw-view1"
    pairs = read_pairs_list(root / f"pairs{args.split}.txt")
    images = sorted({p for pair in pairs for p in (pair.path_a, pair.path_b)})
    labels = np.array([p.is_same for p in pairs])

    start = time.perf_counter()
    prints = {}
    # The engine every command uses: the primary face of each photo, on every core.
    with Analyzer() as analyzer:
        items = [AnalyzeItem(name, root / "images" / name) for name in images]
        for result in analyzer.analyze(items):
            if result.faceprints:
                prints[result.key] = result.faceprints[0].vector
        threshold = analyzer.pipeline.comparator.threshold
    fp_seconds = time.perf_counter() - start
    fp_decisions = np.array(
        [
            p.path_a in prints
            and p.path_b in prints
            and cosine_similarity(prints[p.path_a], prints[p.path_b]) >= threshold
            for p in pairs
        ]
    )
    rows = [
        (
            "faceprint",
            float((fp_decisions == labels).mean()),
            len(images) - len(prints),
            len(images) / fp_seconds,
        )
    ]

    if not args.skip_baseline:
        try:
            import face_recognition  # type: ignore[import-not-found]
        except Exception as err:  # any import failure means "baseline unavailable"
            print(f"face_recognition unavailable ({err}); pip install --no-deps face_recognition")
        else:
            start = time.perf_counter()
            encodings = {}
            for name in images:
                found = face_recognition.face_encodings(face_recognition.load_image_file(str(root / "images" / name)))
                if found:
                    encodings[name] = found[0]
            fr_seconds = time.perf_counter() - start
            fr_decisions = np.array(
                [
                    p.path_a in encodings
                    and p.path_b in encodings
                    and float(face_recognition.face_distance([encodings[p.path_a]], encodings[p.path_b])[0]) <= 0.6
                    for p in pairs
                ]
            )
            # A pair with an undetected photo cannot be decided: count it as an error either way.
            undecided = np.array([p.path_a not in encodings or p.path_b not in encodings for p in pairs])
            accuracy = float(((fr_decisions == labels) & ~undecided).mean())
            rows.append(("face_recognition", accuracy, len(images) - len(encodings), len(images) / fr_seconds))

    print(f"LFW View 1 {args.split}: {len(pairs)} pairs, {len(images)} photos, one process")
    print(f"{'':18}{'accuracy':>10}{'no face':>10}{'photos/s':>10}")
    for name, accuracy, missed, rate in rows:
        print(f"{name:18}{accuracy:>10.2%}{missed:>10}{rate:>10.1f}")
    print(f"faceprint threshold {threshold:.4f} (fitted on DevTrain); face_recognition tolerance 0.6 (its default)")


if __name__ == "__main__":
    main()
