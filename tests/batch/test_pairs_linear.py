"""``faceprint pairs`` stays linear in the number of rows (issue 15 #4: writing was O(n²)).

Measured as an operation count, never a time: cProfile counts every Python and built-in call of a whole
job (parse, resolve, embed 50 photos, score, write the archive). A linear job does ``a + b·n`` calls, so
four times the rows costs at most four times the calls; the quadratic writer (a scan of every row for each
row) cost ``n²`` calls of ``len`` alone, sixteen times as many for four times the rows.
"""

from __future__ import annotations

import cProfile
import pstats
import signal
from pathlib import Path

from faceprint.batch.pairs import PairsOptions, run_pairs_job
from faceprint.testing import fake_pipeline_factory, make_face_png

PHOTOS = 50


def _dataset(root: Path, rows: int) -> Path:
    root.mkdir()
    for index in range(PHOTOS):
        (root / f"{index:02d}.png").write_bytes(make_face_png((index * 5, 250 - index * 5, (index * 37) % 256)))
    with (root / "pairs.csv").open("w") as handle:
        handle.write("left,right,note,batch\n")
        for row in range(rows):
            # Ragged extra columns: the width of the widest row is what the old writer rescanned per row.
            extra = f",{row}" if row % 3 else f",{row},b{row % 7}"
            handle.write(f"{row % PHOTOS:02d}.png,{(row * 7 + 1) % PHOTOS:02d}.png{extra}\n")
    return root


def _calls(tmp_path: Path, rows: int) -> int:
    dataset = _dataset(tmp_path / f"ds-{rows}", rows)
    options = PairsOptions(workers=1, quiet=True, details=True)
    profile = cProfile.Profile()
    signal.alarm(300)  # a quadratic regression would run for many minutes: fail instead
    try:
        profile.enable()
        out = tmp_path / f"r-{rows}.tar.gz"
        result = run_pairs_job([dataset], out, options=options, pipeline_factory=fake_pipeline_factory)
        profile.disable()
    finally:
        signal.alarm(0)
    assert (result.rows, result.scored) == (rows, rows)
    return int(pstats.Stats(profile).total_calls)  # type: ignore[attr-defined]


def test_pairs_job_calls_grow_linearly_with_rows(tmp_path: Path) -> None:
    small, large = _calls(tmp_path, 10_000), _calls(tmp_path, 40_000)
    ratio = large / small
    # Linear: a fixed part (50 photos) plus a per-row part, so the ratio is at most 4 (plus a little slack).
    assert 1.0 < ratio <= 4.2, f"{small} calls for 10k rows, {large} for 40k: ratio {ratio:.2f}"
    per_row = (large - small) / 30_000
    assert per_row < 200, f"{per_row:.0f} calls per extra row"
