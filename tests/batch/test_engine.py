"""The image-embedding engine (faceprint.batch.engine) with the weight-free FakePipeline."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from faceprint.batch.engine import (
    EmbeddedImages,
    EmbeddingPipeline,
    ImageEmbeddingEngine,
    ImageFailedError,
    ImageOutcome,
    ImageSource,
    check_face_mode,
    compare_outcomes,
    embed_image,
    pipeline_config_for_face,
)
from faceprint.errors import MissingFileError, ModelNotFoundError, NoFaceError, UsageError
from faceprint.pipeline import PipelineConfig
from faceprint.testing import (
    FakePipeline,
    crashing_pipeline_factory,
    fake_pipeline_factory,
    make_blank_png,
    make_face_png,
    make_two_face_png,
)

RED = (200, 30, 30)
BLUE = (30, 30, 200)


class CountingFactory:
    """Hands out one FakePipeline so the test can read its call counts (in-process runs only)."""

    def __init__(self) -> None:
        self.pipeline = FakePipeline()
        self.configs: list[PipelineConfig] = []

    def __call__(self, config: PipelineConfig) -> EmbeddingPipeline:
        self.configs.append(config)
        return self.pipeline


def summary(results: EmbeddedImages[str]) -> dict[str, tuple[object, ...]]:
    """Outcomes as comparable values (faceprint vectors are numpy arrays)."""
    return {
        key: (o.faces_found, o.error_code, o.error_message, [p.vector.tolist() for p in o.faceprints])
        for key, o in results.items()
    }


def engine(factory: object = fake_pipeline_factory, **kwargs: object) -> ImageEmbeddingEngine:
    options: dict[str, object] = {"workers": 1, "quiet": True, "pipeline_factory": factory} | kwargs
    return ImageEmbeddingEngine(PipelineConfig(), **options)  # type: ignore[arg-type]


def test_each_distinct_photo_is_embedded_once_and_keys_keep_their_order() -> None:
    red, blue = make_face_png(RED), make_face_png(BLUE)
    factory = CountingFactory()
    items: list[tuple[str, ImageSource]] = [("b", blue), ("a", red), ("a-copy", red), ("blue-again", blue)]
    with engine(factory) as running:
        results = running.embed(items)
    assert list(results) == ["b", "a", "a-copy", "blue-again"]
    assert factory.pipeline.embed_calls == 2
    assert results.embedded == 2
    assert results["a"] == results["a-copy"] and results["a"].faces_found == 1
    assert len(factory.configs) == 1  # one pipeline, built on entering


def test_loaders_are_called_one_at_a_time_just_before_embedding() -> None:
    factory = CountingFactory()
    calls_seen: list[int] = []

    def loader(colour: tuple[int, int, int]) -> bytes:
        # With workers=1 every earlier photo is already embedded when the next one is read.
        calls_seen.append(factory.pipeline.embed_calls)
        return make_face_png(colour)

    items: list[tuple[int, ImageSource]] = [(i, lambda i=i: loader((i * 40, 30, 30))) for i in range(5)]
    with engine(factory) as running:
        results = running.embed(items)
    assert calls_seen == [0, 1, 2, 3, 4]
    assert all(outcome.ok for outcome in results.values())


def test_read_failures_become_outcomes_with_their_code() -> None:
    def missing() -> bytes:
        raise MissingFileError("gone.png: no such file")

    items: list[tuple[str, ImageSource]] = [
        ("gone.png", missing),
        ("refused.png", MissingFileError("refused.png: not in the dataset")),
        ("grey.png", make_blank_png()),
        ("garbage.png", b"not an image"),
        ("red.png", make_face_png(RED)),
    ]
    with engine() as running:
        results = running.embed(items)
    codes = {key: outcome.error_code for key, outcome in results.failed().items()}
    assert codes == {
        "gone.png": "missing_file",
        "refused.png": "missing_file",
        "grey.png": "no_face",
        "garbage.png": "decode_error",
    }
    assert results["grey.png"].faces_found == 0 and results["garbage.png"].faces_found is None
    assert results["red.png"].ok
    assert results.embedded == 3  # the two unreadable ones never reached the pipeline


def test_the_same_key_given_twice_keeps_its_last_source() -> None:
    items: list[tuple[str, ImageSource]] = [("x", make_blank_png()), ("x", make_face_png(RED))]
    with engine() as running:
        results = running.embed(items)
    assert len(results) == 1 and results["x"].ok


def test_worker_processes_give_the_same_outcomes() -> None:
    items: list[tuple[str, ImageSource]] = [
        ("red", make_face_png(RED)),
        ("two", make_two_face_png(RED, BLUE)),
        ("grey", make_blank_png()),
        ("blue", make_face_png(BLUE)),
        ("red-copy", make_face_png(RED)),
    ]
    outcomes: list[EmbeddedImages[str]] = []
    for workers, executor in ((1, "local"), (2, "processes")):
        with engine(workers=workers, keep_all_faces=True, executor=executor) as running:
            outcomes.append(running.embed(iter(items), total=len(items)))
    assert summary(outcomes[0]) == summary(outcomes[1])
    assert outcomes[1]["two"].faces_found == 2 and len(outcomes[1]["two"].faceprints) == 2
    assert outcomes[1].embedded == 4


def test_keep_all_faces_off_keeps_the_selected_face_only() -> None:
    with engine() as running:
        results = running.embed([("two", make_two_face_png(RED, BLUE))])
    assert results["two"].faces_found == 2 and len(results["two"].faceprints) == 1


def test_a_photo_that_kills_its_worker_is_marked_and_the_run_goes_on() -> None:
    # The crashing fake dies on every photo: each is retried once on a fresh worker, then marked.
    items: list[tuple[str, ImageSource]] = [("red", make_face_png(RED)), ("blue", make_face_png(BLUE))]
    with engine(crashing_pipeline_factory, workers=2, executor="processes") as e:
        results = e.embed(items)
    assert {key: outcome.error_code for key, outcome in results.items()} == {
        "red": "worker_crashed",
        "blue": "worker_crashed",
    }
    assert "died on it twice" in str(results["red"].error_message)


def test_model_failure_on_entering_reads_nothing() -> None:
    def broken(config: PipelineConfig) -> EmbeddingPipeline:
        raise ModelNotFoundError("weights not found")

    pulled: list[str] = []

    def items() -> Iterator[tuple[str, ImageSource]]:
        pulled.append("red")
        yield "red", make_face_png(RED)

    with pytest.raises(ModelNotFoundError), engine(broken) as running:
        running.embed(items())
    assert pulled == []


def test_usage_errors() -> None:
    with pytest.raises(UsageError, match="workers"):
        ImageEmbeddingEngine(workers=0)
    with pytest.raises(UsageError, match="with"):
        _ = engine().head
    unpicklable = engine(lambda config: FakePipeline(config), workers=2, executor="processes")
    with pytest.raises(UsageError, match="one worker"), unpicklable as e:
        e.embed([("red", make_face_png(RED)), ("blue", make_face_png(BLUE))])


def test_progress_bar_on_stderr_unless_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    items: list[tuple[str, ImageSource]] = [("red", make_face_png(RED)), ("blue", make_face_png(BLUE))]
    with engine(quiet=False) as running:
        running.embed(items, description="my-photos")
    shown = capsys.readouterr()
    assert "my-photos" in shown.err and "2/2" in shown.err and "images/s" in shown.err
    assert shown.out == ""
    with engine() as running:
        running.embed(items)
    assert capsys.readouterr().err == ""


# --- face modes and comparing outcomes -----------------------------------------------------------------------


def test_face_modes_compare_as_documented() -> None:
    pipeline = FakePipeline()
    # The right (blue) face is the largest; the left one is red.
    two = embed_image(pipeline, make_two_face_png(RED, BLUE), name="two.png", keep_all_faces=True)
    red = embed_image(pipeline, make_face_png(RED), name="red.png", keep_all_faces=True)
    assert not compare_outcomes(pipeline, two, red, face="largest").is_match
    assert not compare_outcomes(pipeline, two, red, face="primary").is_match
    best = compare_outcomes(pipeline, two, red, face="best-match")
    assert best.is_match and best.similarity > 0.99


def test_failed_outcomes_are_not_compared() -> None:
    failed = ImageOutcome.failed(NoFaceError("grey.png: no face found"), faces_found=0)
    red = embed_image(FakePipeline(), make_face_png(RED), name="red.png")
    with pytest.raises(ImageFailedError, match="no faceprints"):
        compare_outcomes(FakePipeline(), failed, red, face="primary")


@pytest.mark.parametrize(
    ("face", "selection"), [("primary", "primary"), ("largest", "largest"), ("best-match", "primary")]
)
def test_pipeline_config_for_face(face: str, selection: str) -> None:
    mode = check_face_mode(face)
    assert pipeline_config_for_face(PipelineConfig(), mode).face_selection == selection


def test_unknown_face_mode() -> None:
    with pytest.raises(UsageError, match="best-match"):
        check_face_mode("biggest")
