from __future__ import annotations

import pytest

from faceprint import errors


def _all_error_classes() -> list[type[errors.FaceprintError]]:
    found: list[type[errors.FaceprintError]] = []
    pending: list[type[errors.FaceprintError]] = [errors.FaceprintError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_codes_are_unique_snake_case() -> None:
    codes = [cls.code for cls in _all_error_classes() if cls.__module__ == "faceprint.errors"]
    assert len(codes) == len(set(codes))
    assert all(code.replace("_", "").isalpha() and code.islower() for code in codes)


@pytest.mark.parametrize(
    ("cls", "code", "exit_code", "http_status"),
    [
        (errors.NoFaceError, "no_face", errors.EXIT_INPUT, 422),
        (errors.DecodeError, "decode_error", errors.EXIT_INPUT, 422),
        (errors.ImageTooLargeError, "image_too_large", errors.EXIT_INPUT, 413),
        (errors.MissingFileError, "missing_file", errors.EXIT_INPUT, 404),
        (errors.UnsafeArchiveMemberError, "unsafe_archive_member", errors.EXIT_INPUT, 422),
        (errors.ChecksumMismatchError, "checksum_mismatch", errors.EXIT_MODEL, 500),
        (errors.ContractMismatchError, "contract_mismatch", errors.EXIT_USAGE, 409),
        (errors.UsageError, "usage_error", errors.EXIT_USAGE, 400),
    ],
)
def test_stable_codes(cls: type[errors.FaceprintError], code: str, exit_code: int, http_status: int) -> None:
    err = cls("boom", details={"x": 1})
    assert (err.code, err.exit_code, err.http_status) == (code, exit_code, http_status)
    assert err.to_dict() == {"code": code, "message": "boom", "details": {"x": 1}}
