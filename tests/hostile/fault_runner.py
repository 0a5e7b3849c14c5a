"""Runs the real ``faceprint`` CLI in a process of its own, with fakes a process-fault test can steer.

Used by ``test_process_faults.py`` as ``python fault_runner.py MODE ARGS...``; MODE picks the pipeline
every worker builds:

- ``slow``: the weight-free fake, slowed to ``FAULT_DELAY_S`` a photo; the first photo touches the file
  ``FAULT_MARKER`` so the test knows the job is under way (and the workers exist);
- ``poison``: the fake, except that a worker dies (``os._exit``, like an out-of-memory kill or a native
  crash) on a photo whose top-left pixel is pure green;
- ``fake``: the plain fake, in this process (no worker processes); with ``FAULT_START_AT`` (a
  ``time.time()``) the command waits until then, so several processes race from the same instant.

The factories are module-level functions, so worker processes (spawned) can unpickle them.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from faceprint.pipeline import PipelineConfig
from faceprint.testing import FakePipeline
from faceprint.types import Detection, RGBImage


class SlowPipeline(FakePipeline):
    def _detect(self, image: RGBImage, **kwargs: object) -> list[Detection]:  # type: ignore[override]
        marker = os.environ.get("FAULT_MARKER")
        if marker is not None:
            Path(marker).touch()
        time.sleep(float(os.environ.get("FAULT_DELAY_S", "0.5")))
        return super()._detect(image, **kwargs)  # type: ignore[arg-type]


class PoisonPipeline(FakePipeline):
    def _detect(self, image: RGBImage, **kwargs: object) -> list[Detection]:  # type: ignore[override]
        if tuple(int(v) for v in image[0, 0]) == (0, 255, 0):
            os._exit(70)
        return super()._detect(image, **kwargs)  # type: ignore[arg-type]


def slow_factory(config: PipelineConfig) -> FakePipeline:
    return SlowPipeline(config)


def poison_factory(config: PipelineConfig) -> FakePipeline:
    return PoisonPipeline(config)


def main() -> None:
    from faceprint.cli.common import CliContext, raise_on_sigterm
    from faceprint.cli.main import app
    from faceprint.settings import load_settings
    from faceprint.testing import fake_pipeline_factory

    # The CLI's factory seam, and worker processes even for a few photos (as a big job would have).
    factory = {"slow": slow_factory, "poison": poison_factory, "fake": fake_pipeline_factory}[sys.argv[1]]
    start_at = os.environ.get("FAULT_START_AT")
    if start_at is not None:  # several processes race from the same instant
        time.sleep(max(0.0, float(start_at) - time.time()))
    settings = load_settings() if sys.argv[1] == "fake" else load_settings(executor="processes")
    context = CliContext(settings=settings, pipeline_factory=factory)
    raise_on_sigterm()  # as the console script's run() does
    app(sys.argv[2:], prog_name="faceprint", obj=context)


if __name__ == "__main__":
    main()
