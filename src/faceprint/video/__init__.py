"""People in videos: frames sampled, faces tracked, tracks identified, time-coded segments (DeepVA's format).

Modules: :mod:`~faceprint.video.timecode` (exact times, SMPTE timecodes), :mod:`~faceprint.video.track`
(ByteTrack-class tracker), :mod:`~faceprint.video.segments` (tracks → segments and the DeepVA result),
:mod:`~faceprint.video.pipeline` (the whole run), :mod:`~faceprint.video.engine` (the run's two calls on
the analysis engine), :mod:`~faceprint.video.synthetic` (videos with known content, for tests and
benchmarks). Frames come from :mod:`faceprint.io.video`.
"""
