"""Exact times and SMPTE timecodes from integer frame indices.

Everything is computed from the integer frame index and the exact frame rate (a :class:`~fractions.Fraction`),
never from a float time: DeepVA's own example reports frame 1036 at 50 fps as ``00:00:20:35`` because it
truncates ``1036 / 50 = 20.72`` seconds in floating point; it is ``00:00:20:36``.

- Non-drop-frame timecode ``HH:MM:SS:FF`` counts frames at the nominal integer rate (25 → 25 labels a second,
  24000/1001 → 24).
- At 30000/1001 (29.97) and 60000/1001 (59.94) the timecode is drop-frame, ``HH:MM:SS;FF``: frame *labels*
  ``;00`` and ``;01`` (``;00``-``;03`` at 59.94) are skipped at the start of every minute except every tenth,
  so the timecode stays within a frame or two of wall-clock time. Rates within 0.001 fps of those (a
  container's ``2997/100``) count as them.
- Hours are not wrapped at 24.

Example:
    >>> smpte_timecode(1036, Fraction(50))
    '00:00:20:36'
    >>> smpte_timecode(1800, Fraction(30000, 1001))
    '00:01:00;02'
    >>> frame_time_s(1036, Fraction(50))
    Fraction(518, 25)
"""

from __future__ import annotations

import math
from fractions import Fraction

from faceprint.errors import UsageError

_NTSC_RATES = {30: Fraction(30000, 1001), 60: Fraction(60000, 1001)}
_NTSC_TOLERANCE = Fraction(1, 1000)


def frame_time_s(frame_index: int, fps: Fraction) -> Fraction:
    """``frame_index / fps`` seconds, exact.

    Example:
        >>> frame_time_s(30, Fraction(30000, 1001))
        Fraction(1001, 1000)
    """
    _check(frame_index, fps)
    return Fraction(frame_index) / fps


def is_drop_frame_rate(fps: Fraction) -> bool:
    """Whether timecodes at ``fps`` are drop-frame (29.97 and 59.94 fps).

    Example:
        >>> is_drop_frame_rate(Fraction(2997, 100)), is_drop_frame_rate(Fraction(25))
        (True, False)
    """
    return any(abs(fps - rate) <= _NTSC_TOLERANCE for rate in _NTSC_RATES.values())


def nominal_fps(fps: Fraction) -> int:
    """The integer frame count per timecode second: 30 for 29.97, 24 for 23.976, 25 for 25, 13 for 12.5.

    Example:
        >>> nominal_fps(Fraction(24000, 1001)), nominal_fps(Fraction(25, 2))
        (24, 13)
    """
    rounded = round(fps)
    if abs(fps - rounded) <= Fraction(1, 100) or is_drop_frame_rate(fps):
        return max(1, int(rounded))
    return max(1, math.ceil(fps))


def smpte_timecode(frame_index: int, fps: Fraction, *, drop_frame: bool | None = None) -> str:
    """The SMPTE timecode of a frame: ``HH:MM:SS:FF``, or ``HH:MM:SS;FF`` drop-frame.

    Args:
        frame_index: 0-based frame index (frame 0 is ``00:00:00:00``).
        fps: the exact frame rate.
        drop_frame: force drop-frame on or off; by default on exactly for 29.97 and 59.94 fps.

    Raises:
        UsageError: a negative index, a non-positive rate, or drop-frame asked at another rate.

    Example:
        >>> smpte_timecode(17982, Fraction(30000, 1001))
        '00:10:00;00'
        >>> smpte_timecode(90_000, Fraction(25))
        '01:00:00:00'
    """
    _check(frame_index, fps)
    drop = is_drop_frame_rate(fps) if drop_frame is None else drop_frame
    base = nominal_fps(fps)
    number = frame_index
    if drop:
        if base not in _NTSC_RATES or not is_drop_frame_rate(fps):
            raise UsageError(f"drop-frame timecode exists only at 29.97 and 59.94 fps, not {float(fps):.4f}")
        dropped = base // 15  # 2 labels a minute at 29.97, 4 at 59.94
        per_minute = base * 60 - dropped
        per_ten_minutes = base * 600 - dropped * 9
        tens, rest = divmod(frame_index, per_ten_minutes)
        number += dropped * 9 * tens
        if rest > dropped:
            number += dropped * ((rest - dropped) // per_minute)
    frames = number % base
    seconds = (number // base) % 60
    minutes = (number // (base * 60)) % 60
    hours = number // (base * 3600)
    separator = ";" if drop else ":"
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{frames:02d}"


def _check(frame_index: int, fps: Fraction) -> None:
    if frame_index < 0:
        raise UsageError(f"frame_index must be non-negative, got {frame_index}")
    if fps <= 0:
        raise UsageError(f"fps must be positive, got {fps}")
