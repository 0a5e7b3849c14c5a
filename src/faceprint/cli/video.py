"""``faceprint video``: the people in videos, as time-coded segments in DeepVA's result format.

Formatting only: options go to :class:`faceprint.video.pipeline.VideoOptions` (which validates them) and
the run is :func:`faceprint.video.pipeline.analyze_videos` on the analysis engine.

Example:
    $ faceprint video talk.mp4 panel.mkv --gallery staff -o results.json --cluster-unknowns
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from fractions import Fraction
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from faceprint.cli.common import (
    BackendOption,
    ConfidentialOption,
    DetectorOption,
    NoFlipOption,
    QuietOption,
    WorkersOption,
    handle_errors,
    open_analyzer,
    pipeline_config,
    stderr,
    stdout,
    use_confidential,
)
from faceprint.errors import EXIT_INPUT, EXIT_PARTIAL
from faceprint.gallery import location
from faceprint.io.atomic import write_atomic
from faceprint.io.output import check_output_path
from faceprint.video.engine import AnalyzerVideoEngine, for_video
from faceprint.video.pipeline import (
    VideoOptions,
    VideoProgress,
    VideoReport,
    analyze_videos,
    default_thumbnails,
)


@contextmanager
def _cancel_on_interrupt() -> Iterator[threading.Event]:
    """The first Ctrl-C asks the run to stop after the frames in flight; a second one stops at once."""
    cancel = threading.Event()
    previous = signal.getsignal(signal.SIGINT)

    def on_interrupt(signum: int, frame: FrameType | None) -> None:
        if cancel.is_set():
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        stderr().print("stopping after the frames in flight (Ctrl-C again to stop at once)")
        cancel.set()

    installed = threading.current_thread() is threading.main_thread()
    if installed:
        signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield cancel
    finally:
        if installed:
            signal.signal(signal.SIGINT, previous)


def _frames_bar(quiet: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("frames"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=quiet,
    )


@handle_errors
def video(
    videos: Annotated[list[Path], typer.Argument(help="Video files (MP4, MOV, MKV, WebM, AVI …).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="JSON file to write: {summary, data}.")],
    galleries: Annotated[
        list[str] | None, typer.Option("--gallery", "-g", help="Gallery to search (repeat for several).")
    ] = None,
    sample_fps: Annotated[
        float | None, typer.Option("--sample-fps", help="Frames per second to detect on (default 5).")
    ] = None,
    every_n_frames: Annotated[
        int | None, typer.Option("--every-n-frames", help="Detect on every N-th frame instead.")
    ] = None,
    face_detection_scale: Annotated[
        int,
        typer.Option(
            "--face-detection-scale", help="Longest side (px, 100-2000) frames are downsized to for detection."
        ),
    ] = 600,
    min_similarity: Annotated[
        float | None,
        typer.Option(
            "--min-similarity", help="Accept a person at or above this cosine similarity (default: FAR 1e-3)."
        ),
    ] = None,
    max_distance: Annotated[
        float | None, typer.Option("--max-distance", help="… or at or below this distance, 0-2 (not both).")
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", help="closest_k_persons per segment (0: off).")] = 3,
    cluster_unknowns: Annotated[
        bool, typer.Option("--cluster-unknowns", help="Label unknown people Unknown #1, #2, … across each video.")
    ] = False,
    index_unknowns: Annotated[
        str | None,
        typer.Option(
            "--index-unknowns",
            help="Keep unknown people in this gallery (created if missing): ids stable across videos.",
        ),
    ] = None,
    segment_gap: Annotated[
        float, typer.Option("--segment-gap", help="Seconds a person may be gone before their segment ends.")
    ] = 2.0,
    track_buffer: Annotated[
        float, typer.Option("--track-buffer", help="Seconds a tracked face may go undetected (occlusion).")
    ] = 1.0,
    chips_per_track: Annotated[int, typer.Option("--chips-per-track", help="Best faces embedded per track.")] = 3,
    upsample: Annotated[
        int,
        typer.Option(
            "--upsample", help="HOG upsampling: 0 finds faces of ~80 px at the detection scale, 1 ~40 px (4x slower)."
        ),
    ] = 0,
    detector: DetectorOption = "hog",
    backend: BackendOption = "auto",
    no_flip: NoFlipOption = False,
    thumbnails: Annotated[
        bool | None,
        typer.Option(
            "--thumbnails/--no-thumbnails",
            help="A JPEG of each person's face per segment (default: on, off in confidential mode).",
        ),
    ] = None,
    workers: WorkersOption = None,
    quiet: QuietOption = False,
    confidential: ConfidentialOption = False,
) -> None:
    """Who is on screen when: one segment per person continuously visible, with boxes, thumbnail and timecodes."""
    settings = use_confidential(confidential)
    options = VideoOptions(
        sample_fps=None if sample_fps is None else Fraction(str(sample_fps)),
        every_n_frames=every_n_frames,
        face_detection_scale=face_detection_scale,
        chips_per_track=chips_per_track,
        track_buffer_s=Fraction(str(track_buffer)),
        segment_gap_s=Fraction(str(segment_gap)),
        top_k=top_k,
        min_similarity=min_similarity,
        max_distance=max_distance,
        cluster_unknowns=cluster_unknowns,
        thumbnails=default_thumbnails(confidential=settings.confidential, asked=thumbnails),
    )
    check_output_path(output, inputs=videos)
    names = list(dict.fromkeys(galleries or []))
    with ExitStack() as stack:
        opened = {n: location.enter_gallery(stack, n, settings=settings) for n in names}
        sink = None
        if index_unknowns is not None:
            sink = opened.get(index_unknowns) or location.enter_gallery(
                stack, index_unknowns, settings=settings, create=True
            )
        searched = [*opened.values(), *([sink] if sink is not None else [])]
        config = for_video(
            pipeline_config(
                model=location.model_for_galleries(searched),
                detector=detector,
                upsample=upsample,
                backend=backend,
                no_flip=no_flip,
            )
        )
        analyzer = stack.enter_context(open_analyzer(config, workers=workers))
        for gallery in searched:
            location.check_gallery_contract(gallery, analyzer.spec)
        cancel = stack.enter_context(_cancel_on_interrupt())
        bar = stack.enter_context(_frames_bar(quiet))
        tasks: dict[str, TaskID] = {}

        def progress(update: VideoProgress) -> None:
            task = tasks.get(update.source)
            if task is None:
                task = tasks[update.source] = bar.add_task(Path(update.source).name, total=update.total_frames or None)
            bar.update(task, completed=update.frames_done)

        report = analyze_videos(
            videos,
            AnalyzerVideoEngine(analyzer),
            list(opened.values()),
            options=options,
            index_unknowns_into=sink,
            progress=progress,
            cancel=cancel,
        )
    write_atomic(output, (json.dumps(report.to_deepva(), indent=2) + "\n").encode("utf-8"))
    _print_report(report, output)
    if report.failed and report.failed == len(report.videos):
        raise typer.Exit(code=EXIT_INPUT)
    if report.failed:
        raise typer.Exit(code=EXIT_PARTIAL)


def _print_report(report: VideoReport, output: Path) -> None:
    table = Table("video", "frames", "people", "segments", "problems")
    for video in report.videos:
        if video.error_code is not None:
            table.add_row(Path(video.source).name, "-", "-", "-", f"[red]{video.error_code}[/]")
            continue
        frames = "-" if video.info is None else str(video.info.total_frames)
        people = ", ".join(dict.fromkeys(s.identity.label for s in video.segments)) or "nobody"
        problems = []
        if video.stats.get("corrupt_frames"):
            problems.append(f"{video.stats['corrupt_frames']} corrupt frames skipped")
        warning = video.stats.get("warning")
        if isinstance(warning, dict):
            problems.append(str(warning.get("code")))
        table.add_row(Path(video.source).name, frames, people, str(len(video.segments)), "; ".join(problems))
    stdout().print(table)
    stderr().print(f"wrote {sum(len(v.segments) for v in report.videos)} segments to {output}", markup=False)
