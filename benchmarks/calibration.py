"""Calibration benchmark: quality-aware vs LFW-only Platt on LFW, CFP (frontal-profile, frontal-frontal), faces-small.

For every set: ECE (10 bins), Brier score, accuracy at the 50% cut (P >= 0.5), best-threshold accuracy on
the same pairs, and 10-fold accuracy (LFW protocol: threshold from 9 folds, tested on the 10th; it ranks
by similarity, so it is the same for both calibrations, and shown once). Two calibrations side by side,
in the same run:

- ``lfw-platt``: the similarity-only Platt sigmoid fitted on LFW View 1 DevTrain (the calibration shipped
  before face quality);
- ``quality``: the quality-aware calibration (``faceprint.evaluate.quality_calibration``) fitted on LFW
  View 1 DevTrain + CFP folds 1-5 (frontal-frontal and frontal-profile pairs), LFW pairs weighted
  :data:`LFW_WEIGHT` (docs/calibration.md: why).

Held-out people only: CFP figures are cross-validated by CFP fold (each fold tested with a calibration
fitted on DevTrain + the 4 other folds; the folds share no person); LFW DevTest and faces-small are
tested with the calibration fitted on everything (they share no person with the fit).

Embeddings come from ``benchmarks/calibration_cache.py`` (built on first use: about 10 minutes on 2
cores); face quality is recomputed from the cached landmarks and chips by ``faceprint.quality``.
``--write-shipped`` writes the calibration fitted on everything to the package's calibration file.

Usage:
    .venv/bin/python benchmarks/calibration.py [--cache-dir .cache/calibration] [--write-shipped]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from calibration_cache import DATA, DEFAULT_CACHE, build

from faceprint import __version__
from faceprint.compare import Comparator, far_threshold_for_quality
from faceprint.evaluate.calibrate import (
    CalibrationRecord,
    fit_platt,
    make_calibration_record,
    save_calibration,
)
from faceprint.evaluate.metrics import best_accuracy_threshold, calibration_quality, kfold_accuracy
from faceprint.evaluate.pairs_list import read_pairs_list
from faceprint.evaluate.quality_calibration import (
    DEFAULT_FEATURES,
    apply_quality_calibration,
    make_quality_calibration_record,
    pair_feature_matrix,
)
from faceprint.models.catalog import builtin_specs
from faceprint.models.spec import Calibration
from faceprint.quality import assess_face
from faceprint.types import Detection, FaceQuality

SHIPPED = Path(__file__).resolve().parents[1] / "src" / "faceprint" / "models" / "calibrations" / "dlib-resnet-v1.json"

LFW_WEIGHT = 2.0
"""Weight of each LFW DevTrain pair in the fit (CFP pairs weigh 1): 2,200 LFW pairs against 6,968 CFP ones
would otherwise leave LFW-like photos a quarter of the say; chosen by cross-validation (docs/calibration.md)."""


@dataclass(frozen=True)
class Pairs:
    """Scored pairs of one set: similarity, label, fold, both faces' quality."""

    name: str
    similarities: np.ndarray
    labels: np.ndarray
    folds: np.ndarray
    qualities_a: list[FaceQuality]
    qualities_b: list[FaceQuality]
    total: int

    def subset(self, mask: np.ndarray) -> Pairs:
        keep = np.flatnonzero(mask)
        return Pairs(
            self.name,
            self.similarities[keep],
            self.labels[keep],
            self.folds[keep],
            [self.qualities_a[i] for i in keep],
            [self.qualities_b[i] for i in keep],
            len(keep),
        )

    @staticmethod
    def concat(name: str, parts: Sequence[Pairs]) -> Pairs:
        return Pairs(
            name,
            np.concatenate([p.similarities for p in parts]),
            np.concatenate([p.labels for p in parts]),
            np.concatenate([p.folds for p in parts]),
            [q for p in parts for q in p.qualities_a],
            [q for p in parts for q in p.qualities_b],
            sum(p.total for p in parts),
        )


@dataclass(frozen=True)
class CachedImages:
    index: dict[str, int]
    vectors: np.ndarray
    qualities: list[FaceQuality | None]
    sha256: list[str | None]


def load_images(name: str, cache_dir: Path) -> CachedImages:
    path = cache_dir / f"{name}.npz"
    if not path.is_file():
        build(name, cache_dir, workers=2)
    cache = np.load(path)
    meta = json.loads(str(cache["meta"]))
    chips, landmarks = cache["chips"], cache["landmarks"]
    qualities: list[FaceQuality | None] = []
    for i, record in enumerate(meta["records"]):
        if record.get("error_code") is not None:
            qualities.append(None)
            continue
        detection = Detection(
            tuple(record["bbox_xyxy"]),
            record["score"],
            record["detector"],
            landmarks_xy=tuple((float(x), float(y)) for x, y in landmarks[i]),
            flags=tuple(record["flags"]),
        )
        width, height = record["size_wh"]
        # assess_face reads only the image's size: a zero image of that size stands in for the photo.
        qualities.append(assess_face(np.zeros((height, width, 3), np.uint8), detection, chips[i]))
    vectors = cache["vectors"].astype(np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors / np.where(norms > 0, norms, 1.0)
    return CachedImages(
        index={str(p): i for i, p in enumerate(cache["paths"])},
        vectors=vectors,
        qualities=qualities,
        sha256=[r.get("sha256") for r in meta["records"]],
    )


def score(name: str, images: CachedImages, pairs: Sequence[tuple[str, str, bool, int]]) -> Pairs:
    rows = []
    for path_a, path_b, same, fold in pairs:
        i, j = images.index[path_a], images.index[path_b]
        quality_a, quality_b = images.qualities[i], images.qualities[j]
        if quality_a is None or quality_b is None:
            continue  # a photo without a face: the pair is unscored, as in `faceprint evaluate`
        rows.append((float(images.vectors[i] @ images.vectors[j]), same, fold, quality_a, quality_b))
    return Pairs(
        name,
        np.array([r[0] for r in rows]),
        np.array([r[1] for r in rows], dtype=bool),
        np.array([r[2] for r in rows], dtype=np.int64),
        [r[3] for r in rows],
        [r[4] for r in rows],
        len(pairs),
    )


def listed_pairs(path: Path) -> list[tuple[str, str, bool, int]]:
    return [(p.path_a, p.path_b, p.is_same, -1 if p.fold is None else p.fold) for p in read_pairs_list(path)]


def faces_small_pairs(images: CachedImages) -> list[tuple[str, str, bool, int]]:
    """Every pair of distinct single-person photos (deduplicated by content) of faces-small."""
    root = DATA / "faces-small" / "face_recognition"
    with (root / "labels.csv").open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["identity"] != "unknown" and "+" not in r["identity"]]
    seen: set[str | None] = set()
    unique = []
    for row in rows:
        digest = images.sha256[images.index[row["file"]]]
        if digest not in seen:
            seen.add(digest)
            unique.append(row)
    return [
        (a["file"], b["file"], a["identity"] == b["identity"], -1)
        for k, a in enumerate(unique)
        for b in unique[k + 1 :]
    ]


def lfw_reference(pairs: Pairs, features: Sequence[str]) -> dict[str, float]:
    """The reference pair: the median LFW DevTrain pair (two frontal news photos)."""
    matrix = pair_feature_matrix(pairs.qualities_a, pairs.qualities_b, features)
    return {name: float(np.median(matrix[:, k])) for k, name in enumerate(features)}


def fit_quality(train: Pairs, weights: np.ndarray, reference: dict[str, float], contract_id: str) -> CalibrationRecord:
    return make_quality_calibration_record(
        train.similarities,
        train.labels,
        train.qualities_a,
        train.qualities_b,
        contract_id=contract_id,
        dataset=train.name,
        features=DEFAULT_FEATURES,
        reference=reference,
        pair_weights=weights,
    )


def lfw_weighted(name: str, lfw: Pairs, others: Sequence[Pairs]) -> tuple[Pairs, np.ndarray]:
    """LFW pairs and the others pooled, with the per-pair weights of the fit (LFW first)."""
    pooled = Pairs.concat(name, [lfw, *others])
    weights = np.r_[np.full(len(lfw.labels), LFW_WEIGHT), np.ones(sum(len(p.labels) for p in others))]
    return pooled, weights


def predict(calibration: Calibration, pairs: Pairs) -> np.ndarray:
    return apply_quality_calibration(calibration, pairs.similarities, pairs.qualities_a, pairs.qualities_b)


def row(pairs: Pairs, method: str, probabilities: np.ndarray) -> dict[str, object]:
    quality = calibration_quality(probabilities, pairs.labels)
    best = best_accuracy_threshold(pairs.similarities, pairs.labels)
    genuine, impostor = int(pairs.labels.sum()), int((~pairs.labels).sum())
    folds = kfold_accuracy(pairs.similarities, pairs.labels, fold_count=max(2, min(10, genuine, impostor)))
    return {
        "set": pairs.name,
        "method": method,
        "pairs": f"{len(pairs.labels)}/{pairs.total}",
        "ece": quality.expected_calibration_error,
        "brier": quality.brier_score,
        "acc50": float(np.mean((probabilities >= 0.5) == pairs.labels)),
        "best": best.accuracy,
        "kfold": folds.mean_accuracy,
    }


def platt_record(pairs: Pairs, contract_id: str) -> CalibrationRecord:
    """The LFW-only record as shipped before face quality: Platt, best-accuracy threshold, FAR thresholds."""
    return make_calibration_record(
        pairs.similarities, pairs.labels, contract_id=contract_id, dataset=pairs.name, target_fars=(1e-2, 1e-3)
    )


def _far_threshold(comparator: Comparator, key: str, reference: float, a: FaceQuality, b: FaceQuality) -> float:
    # The record's own threshold when the calibration has no per-pair model (the comparator's fallback
    # would be the packaged model's).
    per_pair = far_threshold_for_quality(comparator.calibration, key, a, b)
    return reference if per_pair is None else per_pair


def print_far_and_flags(
    quality: CalibrationRecord,
    platt: CalibrationRecord,
    sets: Sequence[Pairs],
    fold_records: dict[int, CalibrationRecord],
    cross_validated: set[str],
) -> None:
    """Achieved FAR and TAR at each FAR threshold (per pair for the quality records), and flag shares.

    Sets in ``cross_validated`` are judged pair by pair with the record fitted without the pair's fold.
    """
    spec = builtin_specs()["dlib-resnet-v1"]
    print(f"\n{'set':<20} {'calibration':<22} {'FAR@1e-2':>9} {'FAR@1e-3':>9} {'TAR@1e-3':>9}  flags")
    for pairs in sets:
        cv = pairs.name in cross_validated
        for name in ("lfw-platt", "quality"):

            def record_of(
                index: int, name: str = name, cv: bool = cv, folds: np.ndarray = pairs.folds
            ) -> CalibrationRecord:
                if name == "lfw-platt":
                    return platt
                return fold_records[int(folds[index])] if cv else quality

            comparators = {
                id(r): Comparator(spec, calibration=r.calibration, threshold=r.threshold)
                for r in (platt, quality, *fold_records.values())
            }
            rates = []
            for key in ("1e-2", "1e-3"):
                accepted = []
                for index, (s, a, b) in enumerate(
                    zip(pairs.similarities, pairs.qualities_a, pairs.qualities_b, strict=True)
                ):
                    record = record_of(index)
                    reference = record.far_thresholds.get(key)
                    if reference is None:
                        break
                    accepted.append(s >= _far_threshold(comparators[id(record)], key, reference, a, b))
                if len(accepted) != len(pairs.labels):
                    rates.append((math.nan, math.nan))
                    continue
                decisions = np.array(accepted)
                rates.append((float(decisions[~pairs.labels].mean()), float(decisions[pairs.labels].mean())))
            flags = Counter(
                flag
                for index, (a, b) in enumerate(zip(pairs.qualities_a, pairs.qualities_b, strict=True))
                for flag in comparators[id(record_of(index))].flags(a, b)
            )
            shares = ", ".join(
                f"{flag} {100 * count / len(pairs.labels):.1f}%" for flag, count in sorted(flags.items())
            )
            label = name + (" (cv by fold)" if cv and name == "quality" else "")
            print(
                f"{pairs.name:<20} {label:<22} {rates[0][0]:>9.4f} {rates[1][0]:>9.4f} {rates[1][1]:>9.4f}  "
                f"{shares or '-'}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--write-shipped", action="store_true", help=f"write the full fit to {SHIPPED}")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    spec = builtin_specs()["dlib-resnet-v1"]
    lfw, cfp, small = (load_images(name, args.cache_dir) for name in ("lfw", "cfp", "faces-small"))
    dev_train = score("LFW View 1 DevTrain", lfw, listed_pairs(DATA / "lfw-view1" / "pairsDevTrain.txt"))
    dev_test = score("LFW View 1 DevTest", lfw, listed_pairs(DATA / "lfw-view1" / "pairsDevTest.txt"))
    cfp_fp = score("CFP folds 1-5 FP", cfp, listed_pairs(DATA / "cfp-train" / "pairs_FP.csv"))
    cfp_ff = score("CFP folds 1-5 FF", cfp, listed_pairs(DATA / "cfp-train" / "pairs_FF.csv"))
    faces_small = score("faces-small", small, faces_small_pairs(small))
    reference = lfw_reference(dev_train, DEFAULT_FEATURES)

    platt = fit_platt(dev_train.similarities, dev_train.labels, dataset="LFW View 1 pairsDevTrain.txt")
    everything, weights = lfw_weighted("LFW View 1 DevTrain + CFP folds 1-5 (FF and FP)", dev_train, [cfp_fp, cfp_ff])
    full = fit_quality(everything, weights, reference, spec.contract_id)

    # CFP cross-validated by fold: no person in both fit and test.
    held_out = {cfp_fp.name: np.zeros(len(cfp_fp.labels)), cfp_ff.name: np.zeros(len(cfp_ff.labels))}
    fold_records: dict[int, CalibrationRecord] = {}
    for fold in sorted(set(cfp_fp.folds.tolist())):
        train, train_weights = lfw_weighted(
            "cv", dev_train, [cfp_fp.subset(cfp_fp.folds != fold), cfp_ff.subset(cfp_ff.folds != fold)]
        )
        fold_records[fold] = fit_quality(train, train_weights, reference, spec.contract_id)
        calibration = fold_records[fold].calibration
        for pairs in (cfp_fp, cfp_ff):
            mask = pairs.folds == fold
            held_out[pairs.name][mask] = predict(calibration, pairs.subset(mask))

    rows = []
    for pairs in (dev_test, cfp_fp, cfp_ff, faces_small):
        rows.append(row(pairs, "lfw-platt", predict(platt, pairs)))
        quality_probabilities = held_out.get(pairs.name)
        if quality_probabilities is None:
            quality_probabilities = predict(full.calibration, pairs)
        rows.append(row(pairs, "quality" + (" (cv by fold)" if pairs.name in held_out else ""), quality_probabilities))

    header = (
        f"{'set':<20} {'calibration':<22} {'pairs':>10} {'ECE':>7} {'Brier':>7} {'acc@50%':>8} {'best':>7} "
        f"{'10-fold':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['set']:<20} {r['method']:<22} {r['pairs']:>10} {r['ece']:>7.4f} {r['brier']:>7.4f} "
            f"{100 * float(r['acc50']):>7.2f}% {100 * float(r['best']):>6.2f}% {100 * float(r['kfold']):>7.2f}%"
        )
    before = platt_record(dev_train, spec.contract_id).threshold
    print(
        f"\nthe decision shipped before face quality (similarity >= {before:.4f}, LFW DevTrain's best-accuracy "
        "threshold): "
        + ", ".join(
            f"{p.name} {100 * float(np.mean((p.similarities >= before) == p.labels)):.2f}%"
            for p in (dev_test, cfp_fp, cfp_ff, faces_small)
        )
    )
    calibration = full.calibration
    terms = ", ".join(
        f"{t.feature} (ref {t.reference:.2f}, range {t.low:.2f}..{t.high:.2f}, slope {t.slope:+.4f}, "
        f"intercept {t.intercept:+.4f})"
        for t in (calibration.quality.terms if calibration.quality is not None else ())
    )
    print(
        f"\nquality fit on {len(everything.labels)} pairs: reference slope {calibration.slope:.3f}, intercept "
        f"{calibration.intercept:.3f}, threshold {full.threshold:.4f}; terms: {terms}"
    )
    print(f"FAR thresholds (reference pair): {full.far_thresholds}")
    print_far_and_flags(
        full,
        platt_record(dev_train, spec.contract_id),
        (dev_test, cfp_fp, cfp_ff, faces_small),
        fold_records,
        set(held_out),
    )
    print(f"elapsed {time.perf_counter() - started:.1f} s (embeddings cached in {args.cache_dir})")
    if args.write_shipped:
        counts = {
            "LFW View 1 pairsDevTrain.txt": f"{len(dev_train.labels)}/{dev_train.total}",
            "cfp-train pairs_FP.csv": f"{len(cfp_fp.labels)}/{cfp_fp.total}",
            "cfp-train pairs_FF.csv": f"{len(cfp_ff.labels)}/{cfp_ff.total}",
        }
        provenance = {
            **calibration.provenance,
            "command": "python benchmarks/calibration.py --write-shipped",
            "dataset_files": counts,
            "pair_weights": {
                "LFW View 1 pairsDevTrain.txt": LFW_WEIGHT,
                "cfp-train pairs_FP.csv": 1.0,
                "cfp-train pairs_FF.csv": 1.0,
            },
            "model_id": spec.id,
            "face": "primary",
            "detector": "hog",
            "flip_average": True,
            "assume_cropped": False,
            "threshold_method": "reference_pair_50_percent",
            "far_method": "impostor_logit_quantile_at_reference_pair",
            "reference_pair": "median LFW View 1 DevTrain pair",
            "package_version": __version__,
            "fitted_on": dt.datetime.now(dt.UTC).date().isoformat(),
        }
        record = CalibrationRecord(
            calibration=Calibration(
                slope=calibration.slope,
                intercept=calibration.intercept,
                method="quality",
                quality=calibration.quality,
                provenance=provenance,
            ),
            contract_id=full.contract_id,
            threshold=full.threshold,
            far_thresholds=full.far_thresholds,
        )
        save_calibration(record, SHIPPED)
        print(f"wrote {SHIPPED}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
