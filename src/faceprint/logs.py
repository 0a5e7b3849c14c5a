"""Log scrubbing for confidential mode: no face data in any log record (docs/privacy.md).

A log call's arguments and its exception are where face data leaks: a file name (``"%s: no face"``), a
vector or image bytes passed as an argument, a traceback whose message or local lines quote a path. In
confidential mode every record keeps only what cannot carry face data:

- the message's fixed format string (log with ``%s`` arguments, never f-strings, so the text is fixed);
- numbers, booleans and ``None`` among the arguments (counts, status codes, similarities); every other
  argument (text, paths, bytes, arrays, containers, objects) becomes ``[redacted]``, so the number of
  arguments, and the formatting of the ``%d``/``%f`` ones, stays as the format string expects;
- the exception's type, and a :class:`~faceprint.errors.FaceprintError`'s stable ``code``; never its
  message nor its traceback.

Example:
    >>> import logging
    >>> record = logging.LogRecord("faceprint.demo", logging.INFO, __file__, 1, "%s: %d faces", ("jane.jpg", 2), None)
    >>> ConfidentialLogFilter().filter(record)
    True
    >>> record.getMessage()
    '[redacted]: 2 faces'
"""

from __future__ import annotations

import logging
import numbers
import threading
from collections.abc import Callable, Mapping
from typing import Any

from faceprint.errors import FaceprintError

__all__ = ["REDACTED", "ConfidentialLogFilter", "install_confidential_logging", "scrub_record"]

REDACTED = "[redacted]"

LOGGERS = ("faceprint", "uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
"""The loggers (besides the root's handlers) :func:`install_confidential_logging` filters by name."""

_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's coloured copy of the fixed format string
}
_lock = threading.Lock()


def _safe(value: object) -> object:
    """``value`` if it cannot carry face data (a number, a boolean, None), else :data:`REDACTED`."""
    if value is None or isinstance(value, bool | numbers.Number):
        return value
    return REDACTED


def _exception_note(error: BaseException) -> str:
    name = type(error).__name__
    if isinstance(error, FaceprintError):
        return f" [exception {name}, code {error.code}]"
    return f" [exception {name}]"


def scrub_record(record: logging.LogRecord) -> logging.LogRecord:
    """Remove face data from ``record`` in place (see the module doc) and return it; again, it changes nothing.

    It runs when a record is made and again in the filters: ``extra={...}`` values arrive in between.
    """
    if not isinstance(record.msg, str):  # a logged object itself (an exception, a path): its text is data
        if isinstance(record.msg, BaseException):
            record.msg = _exception_note(record.msg).strip()
        else:
            record.msg = REDACTED
    if isinstance(record.args, Mapping):
        record.args = {key: _safe(value) for key, value in record.args.items()}
    elif record.args:
        record.args = tuple(_safe(value) for value in record.args)
    if record.exc_info:
        error = record.exc_info[1]
        if error is not None:
            record.msg = f"{record.msg}{_exception_note(error)}"
    record.exc_info = None
    record.exc_text = None
    record.stack_info = None
    for name in [n for n in record.__dict__ if n not in _STANDARD]:  # extra={...} values
        record.__dict__[name] = _safe(record.__dict__[name])
    return record


class ConfidentialLogFilter(logging.Filter):
    """Scrubs every record it sees (:func:`scrub_record`) and lets it through: on a handler, every record it writes."""

    def filter(self, record: logging.LogRecord) -> bool:
        scrub_record(record)
        return True


class _ConfidentialRecord(logging.LogRecord):
    """A record that scrubs itself again when formatted: ``extra={...}`` values are set after it is made."""

    def getMessage(self) -> str:
        scrub_record(self)  # every Formatter.format() calls this before it reads anything else
        return super().getMessage()


_installed_factory: Callable[..., logging.LogRecord] | None = None


def install_confidential_logging() -> None:
    """Confidential mode's logging: no record of any logger carries face data (call it once the mode is on).

    Layers, because a record can reach output along several paths: the filter goes on every handler of
    the root logger, on the ``faceprint`` and ``uvicorn*`` loggers and on their handlers; and every record
    is scrubbed when it is made (the log-record factory) and again when it is formatted, so handlers
    configured later (uvicorn's own logging set-up) and loggers of other libraries write scrubbed records
    too. Calling it again adds nothing twice.
    """
    global _installed_factory
    with _lock:
        log_filter = ConfidentialLogFilter()
        loggers = [logging.getLogger(), *(logging.getLogger(name) for name in LOGGERS)]
        for logger in loggers:
            targets: list[logging.Filterer] = [logger, *logger.handlers]
            for target in targets:
                if not any(isinstance(f, ConfidentialLogFilter) for f in target.filters):
                    target.addFilter(log_filter)
        current = logging.getLogRecordFactory()
        if current is _installed_factory:
            return

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = current(*args, **kwargs)
            if type(record) is logging.LogRecord:  # another library's own record class is left as it is
                record.__class__ = _ConfidentialRecord
            return scrub_record(record)

        _installed_factory = factory
        logging.setLogRecordFactory(factory)
