"""Confidential log scrubbing: no file name, vector or exception text in any record; unchanged otherwise."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import numpy as np
import pytest

from faceprint import logs
from faceprint.errors import InputError
from faceprint.logs import ConfidentialLogFilter, install_confidential_logging

PATH = "/uploads/jane-doe-passport.jpg"
VECTOR = np.array([0.123456, -0.654321, 0.987654], np.float32)


class _NoFace(InputError):
    code = "no_face_found"


def _log_everything(logger: logging.Logger) -> None:
    logger.info("embedded %s as %s (%d faces, quality %.2f)", PATH, VECTOR, 2, 0.75)
    try:
        raise _NoFace(f"{PATH}: no face found")
    except _NoFace:
        logger.exception("enrolment failed")
    try:
        raise ValueError(f"cannot read {PATH}")
    except ValueError as err:
        logger.error(err)
    logger.info("extra", extra={"upload": PATH})


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    """A ``faceprint.*`` logger writing to a string, with the root and record factory restored afterwards."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s %(upload)s", defaults={"upload": "-"}))
    logger = logging.getLogger("faceprint.tests.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    factory = logging.getLogRecordFactory()
    named = [logging.getLogger(), *(logging.getLogger(name) for name in logs.LOGGERS)]
    filters = {id(target): list(target.filters) for lg in named for target in (lg, *lg.handlers)}
    try:
        yield logger, stream, handler
    finally:
        logger.removeHandler(handler)
        logging.setLogRecordFactory(factory)
        for lg in named:
            for target in (lg, *lg.handlers):
                target.filters[:] = filters.get(id(target), [])


def test_without_confidential_mode_logs_are_unchanged(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, _ = captured
    _log_everything(logger)
    text = stream.getvalue()
    assert PATH in text and "0.123456" in text and "Traceback" in text and "cannot read" in text


def test_the_filter_drops_file_names_vectors_and_exception_text(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, handler = captured
    handler.addFilter(ConfidentialLogFilter())
    _log_everything(logger)
    text = stream.getvalue()
    assert "jane" not in text and "uploads" not in text
    assert "0.123" not in text and "0.654" not in text
    assert "Traceback" not in text and "no face found" not in text and "cannot read" not in text
    lines = text.splitlines()
    # The fixed message, numbers, the exception's type and a FaceprintError's stable code remain.
    assert lines[0] == "INFO embedded [redacted] as [redacted] (2 faces, quality 0.75) -"
    assert lines[1] == "ERROR enrolment failed [exception _NoFace, code no_face_found] -"
    assert lines[2] == "ERROR [exception ValueError] -"
    assert lines[3] == "INFO extra [redacted]"


def test_install_covers_handlers_added_later_and_other_loggers(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, _ = captured
    install_confidential_logging()
    install_confidential_logging()  # idempotent: one filter per target, one factory
    assert sum(isinstance(f, ConfidentialLogFilter) for f in logging.getLogger("uvicorn.error").filters) == 1
    later = io.StringIO()
    other = logging.getLogger("some.library")
    late_handler = logging.StreamHandler(later)
    other.addHandler(late_handler)
    other.propagate = False
    try:
        other.warning("could not open %s", PATH)
        _log_everything(logger)
    finally:
        other.removeHandler(late_handler)
    assert later.getvalue() == "could not open [redacted]\n"
    assert PATH not in stream.getvalue() and "Traceback" not in stream.getvalue()
