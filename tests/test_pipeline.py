"""End-to-end checks of the SDK with the real dlib weights on real photos."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from faceprint.io.image import decode_image, load_image
from faceprint.pipeline import face_size_px
from faceprint.types import Faceprint

pytestmark = pytest.mark.integration


def _largest(pipeline: Any, path: Path) -> Faceprint:
    faceprint, found = pipeline.embed_largest(load_image(path))
    assert found and faceprint is not None, f"no face in {path.name}"
    return faceprint


def test_same_person(real_pipeline: Any, examples_dir: Path) -> None:
    result = real_pipeline.compare(
        _largest(real_pipeline, examples_dir / "obama.jpg"), _largest(real_pipeline, examples_dir / "obama2.jpg")
    )
    print(f"obama vs obama2: {result}")
    assert result.is_match and result.probability > 0.9


def test_different_people(real_pipeline: Any, examples_dir: Path) -> None:
    result = real_pipeline.compare(
        _largest(real_pipeline, examples_dir / "obama.jpg"), _largest(real_pipeline, examples_dir / "biden.jpg")
    )
    print(f"obama vs biden: {result}")
    assert not result.is_match and result.probability < 0.1


def test_four_resolutions_agree(real_pipeline: Any, examples_dir: Path) -> None:
    prints = [_largest(real_pipeline, examples_dir / f"obama-{r}.jpg") for r in ("240p", "480p", "720p", "1080p")]
    for a in prints:
        for b in prints:
            result = real_pipeline.compare(a, b)
            assert result.is_match and result.similarity > 0.95


def test_several_faces_are_all_found_largest_first(real_pipeline: Any, examples_dir: Path) -> None:
    image = load_image(examples_dir / "two_people.jpg")
    faces = real_pipeline.embed_faces(image)
    assert len(faces) == 2
    assert face_size_px(faces[0].detection) >= face_size_px(faces[1].detection)
    assert all(f.detection.landmarks_xy is not None and len(f.detection.landmarks_xy) == 5 for f in faces)
    assert not real_pipeline.compare(faces[0].faceprint, faces[1].faceprint).is_match
    largest, found = real_pipeline.embed_largest(image)
    assert found and largest is not None
    assert real_pipeline.compare(largest, faces[0].faceprint).similarity > 0.99


def test_no_face_in_a_plain_picture(real_pipeline: Any) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (800, 600), (120, 130, 140)).save(buf, "PNG")
    faceprint, found = real_pipeline.embed_largest(decode_image(buf.getvalue()))
    assert faceprint is None and not found
    assert real_pipeline.detect_faces(decode_image(buf.getvalue())) == []


def test_exif_rotated_photo_gives_the_same_face(real_pipeline: Any, examples_dir: Path, tmp_path: Path) -> None:
    upright = load_image(examples_dir / "obama.jpg")
    rotated = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # stored sideways…
    exif = Image.Exif()
    exif[0x0112] = 6  # …with the tag that says "turn me 90° clockwise"
    path = tmp_path / "rotated.jpg"
    rotated.save(path, "JPEG", quality=95, exif=exif.tobytes())
    decoded = load_image(path)
    assert decoded.shape == upright.shape
    result = real_pipeline.compare(_largest(real_pipeline, examples_dir / "obama.jpg"), _largest(real_pipeline, path))
    assert result.similarity > 0.97


def test_batch_matches_single_and_chips_have_sdk_sizes(real_pipeline: Any, examples_dir: Path) -> None:
    image = load_image(examples_dir / "obama.jpg")
    detection = real_pipeline.detect_faces(image)[0]
    chip_150 = real_pipeline.extract_aligned_face(image, detection, size=150)
    chip_112 = real_pipeline.extract_aligned_face(image, detection, size=112)
    assert chip_150.shape == (150, 150, 3) and chip_112.shape == (112, 112, 3)
    single = real_pipeline.embed(chip_150)
    batch = real_pipeline.embed_batch([chip_150, chip_150[:, ::-1].copy(), chip_150])
    assert np.allclose(single.vector, batch[0].vector, atol=1e-5)
    assert np.allclose(batch[0].vector, batch[2].vector, atol=1e-5)
    assert single.dim == 128 and single.model_id == "dlib-resnet-v1"
    assert single.model_options["landmarks"] == "dlib-landmarks-5"
    restored = Faceprint.from_json(single.to_json())
    assert real_pipeline.compare(single, restored).similarity == pytest.approx(1.0, abs=1e-6)
    quantised = Faceprint.from_int16(single.to_int16())
    assert real_pipeline.compare(single, quantised).similarity == pytest.approx(1.0, abs=1e-4)
