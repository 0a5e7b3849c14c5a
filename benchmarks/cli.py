"""The one-shot commands end to end, start-up included, beside the face_recognition library in the same run.

Runs, each as a fresh process (so start-up, imports and model loading count, as they do for a user):

* ``python -c pass`` (the floor) and ``faceprint embed ONE.jpg`` (start-up cost of one photo);
* ``faceprint embed`` on 120 and 1,000 LFW View 1 photos (``--workers`` every core);
* ``faceprint identify`` on the same photos against a gallery enrolled from other photos of 20 people;
* the baseline: a script doing what face_recognition's README does — ``load_image_file`` +
  ``face_encodings`` per photo (and ``compare_faces`` against the 20 known people for identify).

Prints wall time, photos/s, the speed-up over face_recognition, and the peak RSS of the largest process of
each run. Needs ``../shared/data/lfw-view1`` and, for the baseline, ``pip install --no-deps
face_recognition`` (reported as unavailable when missing).

    python benchmarks/cli.py [--data ../shared/data] [--counts 120 1000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

BASELINE = r"""
import json, sys
import face_recognition
paths = sys.argv[2:]
known = []
if sys.argv[1] != "-":
    for line in open(sys.argv[1]):
        name, path = line.rstrip("\n").split("\t")
        encodings = face_recognition.face_encodings(face_recognition.load_image_file(path))
        if encodings:
            known.append((name, encodings[0]))
out = []
for path in paths:
    encodings = face_recognition.face_encodings(face_recognition.load_image_file(path))
    for encoding in encodings:
        if known:
            matches = face_recognition.compare_faces([k[1] for k in known], encoding)
            out.append([k[0] for k, m in zip(known, matches) if m][:1])
        else:
            out.append(len(encoding))
print(len(out))
"""


def lfw_people(data: Path) -> dict[str, list[Path]]:
    people: dict[str, list[Path]] = {}
    for path in sorted((data / "lfw-view1" / "images").glob("*/*.jpg")):
        people.setdefault(path.parent.name, []).append(path)
    if not people:
        raise SystemExit(f"no LFW images under {data}/lfw-view1/images")
    return people


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MB) of the largest process, exit code — in a wrapper so RSS is this run's."""
    wrapper = (
        "import resource, subprocess, sys, time, json;"
        "t = time.perf_counter(); rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL,"
        " stderr=subprocess.DEVNULL).returncode;"
        "w = time.perf_counter() - t;"
        "print(json.dumps([w, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, rc]))"
    )
    done = subprocess.run([sys.executable, "-c", wrapper, *command], env=env, capture_output=True, text=True)
    wall, rss, rc = json.loads(done.stdout.strip().splitlines()[-1])
    return float(wall), float(rss), int(rc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--counts", type=int, nargs="+", default=[120, 1000])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    people = lfw_people(args.data)
    # 20 people with several photos: one photo each is enrolled, the others are probes with everyone else.
    enrolled = [name for name, photos in people.items() if len(photos) >= 3][:20]
    gallery_photos = {name: people[name][0] for name in enrolled}
    probes = [p for photos in people.values() for p in photos if p not in gallery_photos.values()]
    step_max = max(args.counts)
    spread = probes[:: max(1, len(probes) // step_max)][:step_max]

    work = Path(tempfile.mkdtemp(prefix="faceprint-bench-"))
    env = {**os.environ, "FACEPRINT_GALLERY_DIR": str(work / "galleries"), "PYTHONWARNINGS": "ignore"}
    # As a user's shell has it: bytecode cached after the first run (PYTHONDONTWRITEBYTECODE=1, set on some
    # machines, recompiles every module on every start: about 0.6 s of start-up that no user pays).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.setdefault("FACEPRINT_MODEL_DIR", str(REPO / ".cache" / "models"))
    faceprint = str(BIN / "faceprint")
    rows: list[dict[str, Any]] = []

    def record(name: str, photos: int, command: list[str]) -> dict[str, Any]:
        wall, rss, rc = timed(command, env)
        row = {"run": name, "photos": photos, "seconds": round(wall, 3), "photos_per_s": round(photos / wall, 1),
               "peak_rss_mb": round(rss), "exit_code": rc}
        rows.append(row)
        print(f"  {name:<44} {photos:>5} photos {wall:7.2f} s {photos / wall:7.1f}/s  {rss:6.0f} MB  rc={rc}",
              flush=True)
        return row

    print(f"load average {os.getloadavg()[0]:.2f}; cores {os.cpu_count()}")
    subprocess.run([faceprint, "--help"], env=env, capture_output=True, check=False)  # write the bytecode cache
    floor = record("python -c pass", 1, [sys.executable, "-c", "pass"])
    one = record("faceprint embed ONE.jpg", 1, [faceprint, "embed", str(spread[0]), "-o", str(work / "one.jsonl")])
    print(f"  start-up cost over python -c pass: {one['seconds'] - floor['seconds']:.2f} s (target <= 0.5 s)")

    subprocess.run([faceprint, "gallery", "create", "bench"], env=env, check=True, capture_output=True)
    for name, path in gallery_photos.items():
        subprocess.run([faceprint, "gallery", "enroll", "bench", "--person", name, str(path), "-q"],
                       env=env, check=False, capture_output=True)
    known = work / "known.tsv"
    known.write_text("".join(f"{name}\t{path}\n" for name, path in gallery_photos.items()))

    probe = subprocess.run([sys.executable, "-c", "import face_recognition"], capture_output=True)
    have_baseline = probe.returncode == 0
    if not have_baseline:
        print("  face_recognition unavailable: pip install --no-deps face_recognition")
    script = work / "baseline.py"
    script.write_text(BASELINE)
    for count in args.counts:
        photos = [str(p) for p in spread[:count]]
        print(f"\n{count} photos")
        ours = record(f"faceprint embed ({count})", count, [faceprint, "embed", *photos, "-o", str(work / "e.jsonl")])
        ident = record(f"faceprint identify --gallery bench ({count})", count,
                       [faceprint, "identify", *photos, "--gallery", "bench", "--json"])
        if have_baseline:
            base = record(f"face_recognition encodings ({count})", count, [sys.executable, str(script), "-", *photos])
            base_id = record(f"face_recognition compare_faces ({count})", count,
                             [sys.executable, str(script), str(known), *photos])
            print(f"  embed: x{base['seconds'] / ours['seconds']:.1f} face_recognition (target x5 at 120)")
            print(f"  identify: x{base_id['seconds'] / ident['seconds']:.1f} face_recognition")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
