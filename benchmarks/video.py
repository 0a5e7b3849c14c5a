"""Video: real-time factor (processing time / video duration) of ``faceprint video`` beside a naive baseline.

Synthetic clips at 640x360 and 1280x720, 25 fps, are made first: faces cut from photos of
``faces-small`` (Obama, Biden: enrolled from other photos; Alex Lacamoire: never enrolled) enter, move and
leave in a repeating pattern. Each system runs in its own process, start-up included, sampling 5 fps:

- **faceprint**: the real command, ``faceprint video CLIP --gallery G -o out.json`` (``--workers`` as given);
- **baseline**: the face_recognition library on every sampled frame (its ``face_locations`` at its default
  upsampling, then ``face_encodings`` and ``face_distance`` to the same enrolled people), frames decoded
  with the same PyAV reader; no tracking, no segments.

Then peak RSS of ``faceprint video`` on a 10-minute synthetic 640x360 clip, beside a 1-minute one (memory
must not grow with the video's length).

    python benchmarks/video.py [--seconds 20] [--long-minutes 10] [--workers 2] [--data ../shared/data]

The baseline needs ``pip install --no-deps face_recognition`` (it reuses the same dlib weights); the
script installs nothing itself and reports the baseline as missing when the package is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FPS = Fraction(25)
SAMPLE_FPS = 5


def _face_cuts(data: Path) -> dict[str, Any]:
    import numpy as np
    from PIL import Image

    from faceprint.io.image import load_image
    from faceprint.pipeline import load_pipeline

    root = data / "faces-small" / "face_recognition" / "examples" / "knn_examples"
    files = {
        "obama": root / "test" / "obama1.jpg",
        "biden": root / "train" / "biden" / "biden2.jpg",
        "alex": root / "test" / "alex_lacamoire1.jpg",
    }
    pipeline = load_pipeline()
    cuts: dict[str, Any] = {}
    for name, path in files.items():
        image = load_image(path)
        (detection, *_) = pipeline.detect_faces(image)
        left, top, right, bottom = detection.bbox_xyxy
        margin = 0.45 * (right - left)
        box = (max(0, int(left - margin)), max(0, int(top - margin)), int(right + margin), int(bottom + margin))
        cuts[name] = np.asarray(Image.fromarray(image).crop(box))
    return cuts


def _scene(cuts: dict[str, Any], size_wh: tuple[int, int], seconds: float) -> tuple[list[Any], int]:
    """Every 10 s: Obama 0-6 s moving right, Biden 3-9 s moving left, Alex 6.5-10 s still."""
    from faceprint.video.synthetic import SceneFace

    width, height = size_wh
    face_h = int(height * 0.4)
    frames = int(seconds * FPS)
    period = int(10 * FPS)
    faces = []
    for start in range(0, frames, period):

        def at(s: float, base: int = start) -> int:
            return min(frames - 1, base + int(s * FPS))

        faces += [
            SceneFace(cuts["obama"], at(0), at(6), (width // 32, height // 36), (width * 3 // 8, height // 18), face_h),
            SceneFace(
                cuts["biden"], at(3), at(9), (width * 3 // 4, height // 2), (width * 2 // 5, height // 2), face_h
            ),
            SceneFace(cuts["alex"], at(6.5), at(9.9), (width // 10, height // 18), (width // 10, height // 18), face_h),
        ]
    return faces, frames


def _write_clip(path: Path, cuts: dict[str, Any], size_wh: tuple[int, int], seconds: float) -> Path:
    from faceprint.video.synthetic import render_scene, write_video

    faces, frames = _scene(cuts, size_wh, seconds)
    write_video(path, render_scene(size_wh, frames, faces), fps=FPS, options={"preset": "veryfast", "crf": "23"})
    return path


def _gallery(path: Path, data: Path) -> Path:
    from faceprint.gallery.sqlite import SqliteGallery
    from faceprint.io.image import load_image
    from faceprint.pipeline import load_pipeline

    root = data / "faces-small" / "face_recognition" / "examples" / "knn_examples" / "train"
    pipeline = load_pipeline()
    with SqliteGallery.create(path) as gallery:
        for name, files in {"obama": ["obama/obama.jpg", "obama/obama2.jpg"], "biden": ["biden/biden.jpg"]}.items():
            prints = [pipeline.embed_largest(load_image(root / f))[0] for f in files]
            gallery.enroll(gallery.add_person(name).person_id, [p for p in prints if p is not None])
    return path


def _run_with_rusage(command: list[str]) -> dict[str, Any]:
    """Wall time and peak RSS of one command (``wait4``: the largest of the process and its reaped workers),
    with its stdout parsed as JSON when it is."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen(command, stdout=out, stderr=err, cwd=REPO)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text, error = out.read().decode(), err.read().decode()
    result: dict[str, Any] = {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "returncode": child.returncode,
        "peak_rss_mb": usage.ru_maxrss / 1024,
    }
    try:
        result.update(json.loads(text or "{}"))
    except json.JSONDecodeError:
        pass
    if child.returncode not in (0, 1):
        result["error"] = error[-2000:]
    return result


def faceprint_command(video: Path, gallery: Path, output: Path, workers: int) -> list[str]:
    return [
        sys.executable,
        "-c",
        "from faceprint.cli.main import run; run()",
        "video",
        str(video),
        "--gallery",
        str(gallery),
        "-o",
        str(output),
        "--sample-fps",
        str(SAMPLE_FPS),
        "--workers",
        str(workers),
        "--quiet",
    ]


def baseline_child(video: Path, data: Path) -> dict[str, Any]:
    """face_recognition on every sampled frame (run in its own process)."""
    try:
        import face_recognition  # type: ignore[import-not-found]
    except (ImportError, SystemExit) as err:
        return {"error": f"face_recognition unavailable ({err}); pip install --no-deps face_recognition"}
    import numpy as np

    from faceprint.io.video import FrameSampling, open_video

    root = data / "faces-small" / "face_recognition" / "examples" / "knn_examples" / "train"
    known = []
    for file in ("obama/obama.jpg", "obama/obama2.jpg", "biden/biden.jpg"):
        encodings = face_recognition.face_encodings(face_recognition.load_image_file(str(root / file)))
        known.append(encodings[0])
    faces = named = 0
    with open_video(video) as reader:
        for frame in reader.frames(sampling=FrameSampling(sample_fps=Fraction(SAMPLE_FPS))):
            image = np.ascontiguousarray(frame.image)
            locations = face_recognition.face_locations(image)
            for encoding in face_recognition.face_encodings(image, locations):
                faces += 1
                named += int(face_recognition.face_distance(known, encoding).min() <= 0.6)
    return {"faces": faces, "named": named}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="Length of the real-time factor clips.")
    parser.add_argument("--long-minutes", type=float, default=10.0, help="Length of the memory clip (0: skip).")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--child", choices=["baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--video", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "baseline":
        sys.stdout.write(json.dumps(baseline_child(args.video, args.data)))
        return

    loads = os.getloadavg()  # the machine may be shared: the figures are only as quiet as it is
    work = Path(tempfile.mkdtemp(prefix="faceprint-video-bench-"))
    cuts = _face_cuts(args.data)
    gallery = _gallery(work / "people.sqlite", args.data)
    rows = []
    for size_wh in [(640, 360), (1280, 720)]:
        clip = _write_clip(work / f"clip-{size_wh[1]}p.mp4", cuts, size_wh, args.seconds)
        output = work / f"out-{size_wh[1]}p.json"
        ours = _run_with_rusage(faceprint_command(clip, gallery, output, args.workers))
        if output.exists():
            result = json.loads(output.read_text())
            ours["segments"] = len(result["data"])
            ours["persons"] = sorted({s["meta"]["person"] for s in result["data"]})
        theirs = _run_with_rusage(
            [sys.executable, __file__, "--child", "baseline", "--video", str(clip), "--data", str(args.data)]
        )
        rows.append((size_wh, ours, theirs))

    load_after = os.getloadavg()[0]
    print(f"\nreal-time factor (processing time / video duration; < 1 is faster than real time), {args.seconds:.0f} s")
    print(
        f"clips at 25 fps, sampled {SAMPLE_FPS} fps, start-up included, {os.cpu_count()} cores, "
        f"faceprint --workers {args.workers}; load average {loads[0]:.1f} before, {load_after:.1f} after"
    )
    print("RTF = wall time / duration; CPU/s = CPU seconds (the process and its workers) per second of video\n")
    print(
        f"{'clip':>10} | {'faceprint RTF':>13} | {'CPU/s':>5} | {'baseline RTF':>12} | {'CPU/s':>5} | "
        f"{'speed-up':>8} | {'fp RSS MB':>9} | {'base RSS MB':>11} | faceprint found"
    )
    for (width, height), ours, theirs in rows:
        rtf = ours["wall_s"] / args.seconds
        base = theirs["wall_s"] / args.seconds if "error" not in theirs else float("nan")
        found = ours.get("persons", ours.get("error", "")[:80])
        print(
            f"{width:>5}x{height:<4} | {rtf:>13.3f} | {ours['cpu_s'] / args.seconds:>5.2f} | {base:>12.3f} | "
            f"{theirs['cpu_s'] / args.seconds:>5.2f} | {base / rtf:>7.1f}x | "
            f"{ours['peak_rss_mb']:>9.0f} | {theirs['peak_rss_mb']:>11.0f} | {found}"
        )
        if "error" in theirs:
            print(f"    baseline: {theirs['error'][:200]}")

    if args.long_minutes > 0:
        print(f"\npeak RSS (largest process) of faceprint video, 640x360 at 25 fps, sampled {SAMPLE_FPS} fps:")
        for minutes in sorted({1.0, args.long_minutes}):
            clip = _write_clip(work / f"long-{minutes:g}min.mp4", cuts, (640, 360), minutes * 60)
            output = work / f"long-{minutes:g}min.json"
            measured = _run_with_rusage(faceprint_command(clip, gallery, output, args.workers))
            segments = len(json.loads(output.read_text())["data"]) if output.exists() else None
            seconds = minutes * 60
            print(
                f"  {minutes:>4g} min: peak RSS {measured['peak_rss_mb']:.0f} MB, "
                f"RTF {measured['wall_s'] / seconds:.3f}, CPU/s {measured['cpu_s'] / seconds:.2f}, "
                f"{segments} segments, load average {os.getloadavg()[0]:.1f}"
                + (f"  ERROR {measured['error'][:200]}" if "error" in measured else "")
            )
    print(f"\n(work files in {work})")


if __name__ == "__main__":
    main()
