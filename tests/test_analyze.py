"""The engine (faceprint.analyze.Analyzer) with the weight-free FakePipeline."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from faceprint.analyze import (
    AnalyzeItem,
    AnalyzeOptions,
    AnalyzeProgress,
    Analyzer,
    CancelledError,
    EmbeddingPipeline,
    ImageResult,
    compare_results,
)
from faceprint.errors import MissingFileError, UsageError
from faceprint.io.image import decode_image
from faceprint.pipeline import PipelineConfig
from faceprint.testing import (
    FakePipeline,
    fake_pipeline_factory,
    make_blank_png,
    make_face_png,
    make_off_centre_group_png,
    make_two_face_png,
)

RED, BLUE = (200, 20, 20), (20, 20, 200)


class OneFake:
    """Hands out a single FakePipeline so a test can read its counters (in-process runs only)."""

    def __init__(self) -> None:
        self.pipeline = FakePipeline()

    def __call__(self, config: PipelineConfig) -> EmbeddingPipeline:
        return self.pipeline


def analyze(items: list[AnalyzeItem], **options: object) -> list[ImageResult]:
    with Analyzer(workers=1, pipeline_factory=fake_pipeline_factory) as analyzer:
        return list(analyzer.analyze(items, options=AnalyzeOptions(**options)))  # type: ignore[arg-type]


def mean_colour(result: ImageResult) -> list[int]:
    return [round(v - 1) for v in result.faceprints[0].vector]


@pytest.mark.parametrize(
    ("face", "selected_colour", "faceprints"),
    [("primary", BLUE, 1), ("largest", RED, 1), ("all", BLUE, 2), ("best-match", BLUE, 2)],
)
def test_the_face_rule_picks_and_embeds(face: str, selected_colour: tuple[int, int, int], faceprints: int) -> None:
    # The largest face (red) is in a corner; a smaller one (blue) is centred.
    (result,) = analyze([AnalyzeItem("group.png", make_off_centre_group_png())], face=face)
    assert result.ok and result.faces_found == 2 and len(result.faces) == 2
    assert len(result.faceprints) == faceprints
    assert mean_colour(result) == pytest.approx(list(selected_colour), abs=3)
    assert result.selected is not None and result.selected.faceprint is result.faceprints[0]


def test_detection_only_reports_faces_and_quality_without_faceprints() -> None:
    results = analyze(
        [AnalyzeItem("two.png", make_two_face_png(RED, BLUE)), AnalyzeItem("grey.png", make_blank_png())],
        face="all",
        embed=False,
    )
    two, grey = results
    assert two.ok and two.faces_found == 2 and two.faceprints == ()
    assert all(face.quality is not None and face.quality.interocular_px > 0 for face in two.faces)
    assert grey.ok and grey.faces_found == 0  # no face is not an error when nothing is to be embedded


def test_quality_is_carried_by_the_faceprint() -> None:
    (result,) = analyze([AnalyzeItem("red.png", make_face_png(RED))])
    face = result.faces[0]
    assert face.faceprint is not None and face.faceprint.quality == face.quality
    assert face.quality is not None and face.quality.detector_stage


def test_given_boxes_skip_detection_and_are_all_embedded() -> None:
    fake = OneFake()
    image = decode_image(make_two_face_png(RED, BLUE))
    boxes = tuple(fake.pipeline.detect_faces(image, selection="primary"))
    calls_before = len(fake.pipeline.detection_calls)
    with Analyzer(workers=1, pipeline_factory=fake) as analyzer:
        (result,) = analyzer.analyze([AnalyzeItem("frame-7", image, detections=boxes[1:])])
    assert len(fake.pipeline.detection_calls) == calls_before
    assert len(result.faceprints) == 1 and result.faces[0].detection.bbox_xyxy == boxes[1].bbox_xyxy
    assert result.sha256 is None and result.size_wh == (image.shape[1], image.shape[0])


def test_every_kind_of_source_and_its_errors(tmp_path: Path) -> None:
    photo = tmp_path / "red.png"
    photo.write_bytes(make_face_png(RED))

    def loader() -> bytes:
        raise MissingFileError("gone.png: no such file")

    items = [
        AnalyzeItem("path", photo),
        AnalyzeItem("bytes", make_face_png(BLUE)),
        AnalyzeItem("array", decode_image(make_face_png(RED))),
        AnalyzeItem("loader", loader),
        AnalyzeItem("error", MissingFileError("refused.png: refused")),
        AnalyzeItem("missing", tmp_path / "nope.png"),
        AnalyzeItem("garbage", b"not an image"),
        AnalyzeItem("grey", make_blank_png()),
        AnalyzeItem("bad-array", np.zeros((4, 4), np.uint8)),
    ]
    results = analyze(items)
    codes = {r.key: r.error_code for r in results}
    assert codes == {
        "path": None,
        "bytes": None,
        "array": None,
        "loader": "missing_file",
        "error": "missing_file",
        "missing": "missing_file",
        "garbage": "decode_error",
        "grey": "no_face",
        "bad-array": "decode_error",
    }
    assert [r.index for r in results] == list(range(len(items)))


def test_identical_bytes_are_analysed_once_and_each_name_gets_its_own_message() -> None:
    fake = OneFake()
    items = [
        AnalyzeItem("a.png", make_face_png(RED)),
        AnalyzeItem("b.gif", b"garbage bytes"),
        AnalyzeItem("copy-of-a.png", make_face_png(RED)),
        AnalyzeItem("c.jpg", b"garbage bytes"),
    ]
    with Analyzer(workers=1, pipeline_factory=fake) as analyzer:
        results = list(analyzer.analyze(items))
    assert fake.pipeline.embed_calls == 1  # the red photo once; the garbage never reaches detection
    assert results[0].faceprints[0].same_as(results[2].faceprints[0])
    assert str(results[1].error_message).startswith("b.gif:")
    assert str(results[3].error_message).startswith("c.jpg:") and "b.gif" not in str(results[3].error_message)


def test_progress_is_reported_after_every_image() -> None:
    seen: list[AnalyzeProgress] = []
    items = [AnalyzeItem("a", make_face_png(RED)), AnalyzeItem("b", b"x"), AnalyzeItem("c", make_face_png(BLUE))]
    with Analyzer(workers=1, pipeline_factory=fake_pipeline_factory) as analyzer:
        list(analyzer.analyze(items, progress=seen.append))
    assert [(p.done, p.total, p.failed) for p in seen] == [(1, 3, 0), (2, 3, 1), (3, 3, 1)]


def test_cancel_stops_the_call() -> None:
    cancel = threading.Event()
    cancel.set()
    with Analyzer(workers=1, pipeline_factory=fake_pipeline_factory) as analyzer, pytest.raises(CancelledError):
        list(analyzer.analyze([AnalyzeItem("a", make_face_png(RED))], cancel=cancel))


@pytest.mark.parametrize("order", ["input", "completed"])
def test_worker_processes_give_the_same_results(order: str) -> None:
    items = [AnalyzeItem(f"{i}", make_face_png((20 * i, 40, 40))) for i in range(8)]
    items.append(AnalyzeItem("two", make_two_face_png(RED, BLUE)))
    local = analyze(items, face="all")
    with Analyzer(workers=2, executor="processes", pipeline_factory=fake_pipeline_factory) as analyzer:
        pooled = list(analyzer.analyze(items, options=AnalyzeOptions(face="all"), order=order))  # type: ignore[arg-type]
    if order == "input":
        assert [r.key for r in pooled] == [r.key for r in local]
    by_key = {r.key: r for r in pooled}
    for result in local:
        other = by_key[result.key]
        assert other.faces_found == result.faces_found
        assert [p.vector.tolist() for p in other.faceprints] == [p.vector.tolist() for p in result.faceprints]


def test_one_analyzer_serves_several_threads() -> None:
    items = [AnalyzeItem(f"{i}", make_face_png((10 * i, 60, 60))) for i in range(6)]
    outputs: dict[int, list[str | None]] = {}
    with Analyzer(workers=1, pipeline_factory=fake_pipeline_factory) as analyzer:

        def work(n: int) -> None:
            outputs[n] = [r.error_code for r in analyzer.analyze(items)]

        threads = [threading.Thread(target=work, args=(n,)) for n in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert outputs == {n: [None] * 6 for n in range(3)}


def test_best_match_compares_every_face() -> None:
    # The blue face is the smaller one (the left square): primary picks the red one.
    items = [AnalyzeItem("two", make_two_face_png(BLUE, RED)), AnalyzeItem("blue", make_face_png(BLUE))]
    with Analyzer(workers=1, pipeline_factory=fake_pipeline_factory) as analyzer:
        two, blue = analyzer.analyze(items, options=AnalyzeOptions(face="best-match"))
        assert compare_results(analyzer.pipeline, two, blue, face="best-match").is_match
        assert not compare_results(analyzer.pipeline, two, blue, face="primary").is_match


@pytest.mark.parametrize(
    "build",
    [
        lambda: AnalyzeOptions(face="biggest"),  # type: ignore[arg-type]
        lambda: AnalyzeOptions(detect_max_side_px=10),
        lambda: Analyzer(workers=0),
        lambda: Analyzer(executor="cluster"),  # type: ignore[arg-type]
    ],
)
def test_bad_settings_are_usage_errors(build: object) -> None:
    with pytest.raises(UsageError):
        build()  # type: ignore[operator]
