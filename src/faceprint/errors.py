"""One exception tree with stable codes.

The library raises these; the edges map them: the CLI to exit codes (``exit_code``), the HTTP server to a
status and a JSON body (``http_status``), batch jobs to a per-row error code (``code``) and go on.

Codes are part of the public contract: never rename one, only add.

Example:
    >>> try:
    ...     raise NoFaceError("no face in photo.jpg")
    ... except FaceprintError as err:
    ...     (err.code, err.exit_code)
    ('no_face', 3)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

# Exit codes, documented in docs/cli.md. 1 is reserved for "some items failed, output written".
EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_MODEL = 4
EXIT_INTERNAL = 70


class FaceprintError(Exception):
    """Base of every error faceprint raises on purpose."""

    code: ClassVar[str] = "faceprint_error"
    exit_code: ClassVar[int] = EXIT_INTERNAL
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, *, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details) if details is not None else {}

    def to_dict(self) -> dict[str, Any]:
        """The error as the JSON body the server and ``--json`` outputs use."""
        return {"code": self.code, "message": self.message, "details": self.details}


# --- usage and configuration -------------------------------------------------------------------------


class UsageError(FaceprintError):
    """The caller asked for something that cannot work (bad option, bad combination)."""

    code = "usage_error"
    exit_code = EXIT_USAGE
    http_status = 400


class InvalidSettingError(UsageError):
    code = "invalid_setting"


# --- input data --------------------------------------------------------------------------------------


class InputError(FaceprintError):
    """Something about one input item; batch jobs record it and go on."""

    code = "input_error"
    exit_code = EXIT_INPUT
    http_status = 422


class MissingFileError(InputError):
    code = "missing_file"
    http_status = 404


class AmbiguousFileError(InputError):
    code = "ambiguous_file"


class DecodeError(InputError):
    code = "decode_error"


class UnsupportedFormatError(DecodeError):
    code = "unsupported_format"
    http_status = 415


class ImageTooLargeError(InputError):
    code = "image_too_large"
    http_status = 413


class NoFaceError(InputError):
    code = "no_face"


class UnsafeArchiveMemberError(InputError):
    code = "unsafe_archive_member"


class ArchiveError(InputError):
    code = "archive_error"


class CsvFormatError(InputError):
    code = "malformed_csv"


class PairsFileError(InputError):
    """No pairs.csv, or more than one, in a dataset."""

    code = "pairs_file_error"


# --- models and embeddings ---------------------------------------------------------------------------


class ModelError(FaceprintError):
    code = "model_error"
    exit_code = EXIT_MODEL
    http_status = 500


class ModelNotFoundError(ModelError):
    code = "model_not_found"


class ChecksumMismatchError(ModelError):
    code = "checksum_mismatch"


class BackendUnavailableError(ModelError):
    code = "backend_unavailable"


class ContractMismatchError(FaceprintError):
    """Two faceprints (or a faceprint and a gallery) come from different embedding contracts."""

    code = "contract_mismatch"
    exit_code = EXIT_USAGE
    http_status = 409


class FaceprintFormatError(InputError):
    """A serialised faceprint (JSON or int16) that cannot be read."""

    code = "faceprint_format"


class ImageTooSmallError(InputError):
    """An image with a side below the decode limit: no face fits, and detectors fail on such shapes."""

    code = "image_too_small"


# --- outputs -----------------------------------------------------------------------------------------
# Checked before any work starts (faceprint.io.output), and mapped from errno at write time
# (faceprint.io.atomic), so a bad output never costs the work done, nor destroys an input.

EXIT_OUTPUT = 73
"""The output cannot be written (sysexits' EX_CANTCREAT): full disk, read-only file system, permission."""


class OutputPathError(UsageError):
    """An output path that cannot be used; found before any work starts."""

    code = "output_path_error"


class OutputIsInputError(OutputPathError):
    code = "output_is_input"


class OutputNotRegularError(OutputPathError):
    """The output names a device node, FIFO or socket: replacing it would destroy it."""

    code = "output_not_regular"


class OutputIsDirectoryError(OutputPathError):
    code = "output_is_directory"


class OutputNotDirectoryError(OutputPathError):
    code = "output_not_directory"


class OutputParentMissingError(OutputPathError):
    code = "output_parent_missing"


class OutputWriteError(FaceprintError):
    """Writing an output failed for a reason of the file system, not of the data."""

    code = "output_write_error"
    exit_code = EXIT_OUTPUT
    http_status = 507


class OutputNotWritableError(OutputWriteError):
    code = "output_not_writable"
    http_status = 500


class ReadOnlyOutputError(OutputWriteError):
    code = "read_only_output"
    http_status = 500


class DiskFullError(OutputWriteError):
    code = "disk_full"


class NoPairsError(PairsFileError):
    """A ``pairs.csv`` that is empty or holds only a header: the dataset has nothing to score."""

    code = "no_pairs"


class NotRegularFileError(InputError):
    """A path that is a FIFO, device or socket where a file was expected: never opened (a FIFO would hang)."""

    code = "not_regular_file"


class UnreadableMemberError(UnsafeArchiveMemberError):
    """A file or sub-folder of a dataset folder that cannot be read (permissions): refused alone."""

    code = "unreadable_member"


def error_for_code(code: str, message: str, *, details: Mapping[str, Any] | None = None) -> FaceprintError:
    """Rebuild an error from its code (a result recorded ``code`` and ``message``): the class that owns it.

    Example:
        >>> error_for_code("no_face", "a.jpg: no face found").exit_code
        3
    """
    pending: list[type[FaceprintError]] = [FaceprintError]
    while pending:
        cls = pending.pop()
        if cls.code == code:
            return cls(message, details=details)
        pending.extend(cls.__subclasses__())
    return InputError(message, details={**(dict(details) if details else {}), "code": code})


class InvalidArgumentError(UsageError, ValueError):
    """A value the library cannot work with (a box of no size, a non-finite vector, a bad model spec field).

    Also a :class:`ValueError`, so code that validates with ``except ValueError`` keeps working, while the
    CLI and the server map it like every other error (``invalid_argument``, exit 2, HTTP 422).
    """

    code = "invalid_argument"
    http_status = 422
