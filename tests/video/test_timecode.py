"""SMPTE timecodes and exact times from integer frame indices (table-driven)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from faceprint.errors import UsageError
from faceprint.video.timecode import frame_time_s, is_drop_frame_rate, nominal_fps, smpte_timecode

NTSC = Fraction(30000, 1001)
NTSC60 = Fraction(60000, 1001)


@pytest.mark.parametrize(
    ("frame", "fps", "expected"),
    [
        (0, Fraction(25), "00:00:00:00"),
        (24, Fraction(25), "00:00:00:24"),
        (25, Fraction(25), "00:00:01:00"),
        (1036, Fraction(50), "00:00:20:36"),  # DeepVA's example says 20:35 (float truncation)
        (90_000, Fraction(25), "01:00:00:00"),
        (2_160_000, Fraction(25), "24:00:00:00"),  # hours are not wrapped
        (23, Fraction(24000, 1001), "00:00:00:23"),
        (24, Fraction(24000, 1001), "00:00:01:00"),
        (12, Fraction(25, 2), "00:00:00:12"),
        (13, Fraction(25, 2), "00:00:01:00"),
        # drop-frame at 29.97: labels ;00 and ;01 skipped each minute but every tenth
        (0, NTSC, "00:00:00;00"),
        (29, NTSC, "00:00:00;29"),
        (30, NTSC, "00:00:01;00"),
        (1799, NTSC, "00:00:59;29"),
        (1800, NTSC, "00:01:00;02"),
        (3597, NTSC, "00:01:59;29"),
        (3598, NTSC, "00:02:00;02"),
        (17_981, NTSC, "00:09:59;29"),
        (17_982, NTSC, "00:10:00;00"),
        (17_983, NTSC, "00:10:00;01"),
        (19_782, NTSC, "00:11:00;02"),
        (107_892, NTSC, "01:00:00;00"),  # 29.97 x 3600 = 107892: drop-frame stays on wall-clock time
        (1800, Fraction(2997, 100), "00:01:00;02"),  # a container's 2997/100 is NTSC too
        # drop-frame at 59.94: four labels a minute
        (3599, NTSC60, "00:00:59;59"),
        (3600, NTSC60, "00:01:00;04"),
        (35_964, NTSC60, "00:10:00;00"),
        (215_784, NTSC60, "01:00:00;00"),
    ],
)
def test_smpte_timecode(frame: int, fps: Fraction, expected: str) -> None:
    assert smpte_timecode(frame, fps) == expected


def test_non_drop_frame_forced_at_ntsc() -> None:
    assert smpte_timecode(1800, NTSC, drop_frame=False) == "00:01:00:00"


@pytest.mark.parametrize(
    ("frame", "fps", "seconds"),
    [
        (0, Fraction(25), Fraction(0)),
        (1036, Fraction(50), Fraction(2072, 100)),
        (30, NTSC, Fraction(1001, 1000)),
        (275, Fraction(2997, 100), Fraction(27500, 2997)),
    ],
)
def test_frame_time_is_exact(frame: int, fps: Fraction, seconds: Fraction) -> None:
    assert frame_time_s(frame, fps) == seconds


@pytest.mark.parametrize(
    ("fps", "drop", "nominal"),
    [
        (Fraction(25), False, 25),
        (NTSC, True, 30),
        (NTSC60, True, 60),
        (Fraction(2997, 100), True, 30),
        (Fraction(30), False, 30),
        (Fraction(24000, 1001), False, 24),
        (Fraction(25, 2), False, 13),
    ],
)
def test_rates(fps: Fraction, drop: bool, nominal: int) -> None:
    assert (is_drop_frame_rate(fps), nominal_fps(fps)) == (drop, nominal)


@pytest.mark.parametrize(
    ("frame", "fps", "drop"),
    [(-1, Fraction(25), None), (0, Fraction(0), None), (10, Fraction(25), True)],
)
def test_bad_arguments(frame: int, fps: Fraction, drop: bool | None) -> None:
    with pytest.raises(UsageError):
        smpte_timecode(frame, fps, drop_frame=drop)
