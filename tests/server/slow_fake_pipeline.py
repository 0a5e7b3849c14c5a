"""A fake pipeline that takes 0.1 s per photo, so a test can kill a worker in the middle of a job.

Worker processes import it by name (``slow_fake_pipeline:slow_pipeline_factory``, with this folder on
``PYTHONPATH``).
"""

from __future__ import annotations

import time

from faceprint.pipeline import PipelineConfig
from faceprint.testing import FakePipeline
from faceprint.types import Faceprint, RGBImage

SECONDS_PER_PHOTO = 0.1


class SlowFakePipeline(FakePipeline):
    def embed_batch(self, chips: list[RGBImage]) -> list[Faceprint]:
        time.sleep(SECONDS_PER_PHOTO * max(1, len(chips)))
        return super().embed_batch(chips)


def slow_pipeline_factory(config: PipelineConfig) -> FakePipeline:
    return SlowFakePipeline(config)
