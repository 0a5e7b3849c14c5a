"""Build a small demo dataset (photos + pairs.csv, packed as .tar.gz) for ``faceprint demo``.

Sources, first that works: photos the user names; the real photos in ``../shared/data`` (or
``FACEPRINT_DEMO_DATA``); the Grace Hopper portrait that matplotlib ships. Every demo also holds a corrupt
file, a photo without a face and a row naming a missing file, so ``processing.error`` shows how failures
are reported without sinking the other rows.

Example:
    >>> dataset = build_demo_dataset(Path("demo-output"))   # doctest: +SKIP
    >>> dataset.archive.name  # doctest: +SKIP
    'demo-dataset.tar.gz'
"""

from __future__ import annotations

import csv
import io
import os
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image

from faceprint.errors import UsageError

_SHARED_EXAMPLES = ("faces-small", "face_recognition", "examples")
_SHARED_PHOTOS = (
    "obama.jpg",
    "obama2.jpg",
    "obama-480p.jpg",
    "biden.jpg",
    "two_people.jpg",
    "alex-lacamoire.png",
    "lin-manuel-miranda.png",
)
_SHARED_PAIRS = (
    ("obama.jpg", "obama2.jpg"),
    ("obama.jpg", "obama-480p.jpg"),
    ("obama.jpg", "biden.jpg"),
    ("obama2.jpg", "two_people.jpg"),
    ("alex-lacamoire.png", "lin-manuel-miranda.png"),
    ("lin-manuel-miranda.png", "obama2.jpg"),
)


@dataclass(frozen=True, slots=True)
class DemoDataset:
    archive: Path
    source: str
    rows: int


def _shared_examples_dir() -> Path | None:
    candidates = []
    if os.environ.get("FACEPRINT_DEMO_DATA"):
        candidates.append(Path(os.environ["FACEPRINT_DEMO_DATA"]))
    candidates += [Path.cwd().parent / "shared" / "data", Path.cwd() / ".." / "shared" / "data"]
    for base in candidates:
        examples = base.joinpath(*_SHARED_EXAMPLES)
        if all((examples / name).is_file() for name in _SHARED_PHOTOS):
            return examples
    return None


def _grace_hopper() -> bytes | None:
    try:
        import matplotlib
    except ImportError:
        return None
    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return path.read_bytes() if path.is_file() else None


def _jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=92)
    return buf.getvalue()


def _no_face_png() -> bytes:
    gradient = np.linspace(40, 220, 320, dtype=np.uint8)[None, :].repeat(240, axis=0)
    buf = io.BytesIO()
    Image.fromarray(np.stack([gradient, gradient[::-1], gradient], axis=2)).save(buf, "PNG")
    return buf.getvalue()


def _photos_and_pairs(images: Sequence[Path]) -> tuple[dict[str, bytes], list[tuple[str, str]], str]:
    if images:
        photos: dict[str, bytes] = {}
        for path in images:
            if not path.is_file():
                raise UsageError(f"{path}: no such file")
            name = path.name if path.name not in photos else f"{len(photos)}-{path.name}"
            photos[name] = path.read_bytes()
        return photos, list(combinations(photos, 2)), "your photos"
    examples = _shared_examples_dir()
    if examples is not None:
        return (
            {name: (examples / name).read_bytes() for name in _SHARED_PHOTOS},
            list(_SHARED_PAIRS),
            f"real photos from {examples}",
        )
    portrait = _grace_hopper()
    if portrait is None:
        raise UsageError("no demo photos: pass some (`faceprint demo a.jpg b.jpg`) or `pip install matplotlib`")
    original = Image.open(io.BytesIO(portrait))
    photos = {
        "hopper.jpg": portrait,
        "hopper-mirrored.jpg": _jpeg(original.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
        "hopper-small.jpg": _jpeg(original.resize((original.width // 2, original.height // 2))),
        "hopper-tilted.jpg": _jpeg(original.rotate(8, resample=Image.Resampling.BILINEAR, expand=False)),
    }
    pairs = [
        ("hopper.jpg", "hopper-mirrored.jpg"),
        ("hopper.jpg", "hopper-small.jpg"),
        ("hopper.jpg", "hopper-tilted.jpg"),
    ]
    return photos, pairs, "matplotlib's Grace Hopper portrait (no ../shared/data found)"


def build_demo_dataset(output_dir: Path, images: Sequence[Path] = ()) -> DemoDataset:
    """Write ``output_dir/demo-dataset.tar.gz`` and return where it is and what it holds."""
    photos, pairs, source = _photos_and_pairs(images)
    photos["broken.jpg"] = b"\xff\xd8\xff\xe0 this JPEG stops here"
    photos["landscape.png"] = _no_face_png()
    first = next(iter(photos))
    pairs += [(first, "broken.jpg"), (first, "landscape.png"), (first, "not-in-the-dataset.jpg")]
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["image_a", "image_b"])
    writer.writerows(pairs)
    members = {**photos, "pairs.csv": table.getvalue().encode()}
    output_dir.mkdir(parents=True, exist_ok=True)
    archive = output_dir / "demo-dataset.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in sorted(members.items()):
            info = tarfile.TarInfo(f"demo/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return DemoDataset(archive=archive, source=source, rows=len(pairs))
