from __future__ import annotations

import importlib
import pkgutil

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


def _import_every_module() -> None:
    """Error classes live beside their one user too (gallery, batch, evaluate): load them all."""
    import faceprint

    for info in pkgutil.walk_packages(faceprint.__path__, prefix="faceprint."):
        importlib.import_module(info.name)


def test_codes_are_unique_snake_case_across_the_package() -> None:
    _import_every_module()
    classes = [cls for cls in _all_error_classes() if cls.__module__.startswith("faceprint.")]
    by_code: dict[str, list[str]] = {}
    for cls in classes:
        by_code.setdefault(cls.code, []).append(f"{cls.__module__}.{cls.__qualname__}")
    duplicated = {code: names for code, names in by_code.items() if len(names) > 1}
    assert duplicated == {}
    assert all(code.replace("_", "").isalpha() and code.islower() for code in by_code)
    assert len(by_code) >= 25


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
