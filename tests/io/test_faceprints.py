"""read_faceprint_file and check_comparable (faceprint.io.faceprints): every malformed file is one clear error."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from faceprint.errors import ContractMismatchError, FaceprintFormatError, MissingFileError, NotRegularFileError
from faceprint.io.faceprints import check_comparable, read_faceprint_file
from faceprint.types import Faceprint


def _faceprint(dim: int = 8, value: float = 1.0, contract: str = "m:1") -> Faceprint:
    return Faceprint(np.full(dim, value, np.float32), model_id="m", contract_id=contract, package_version="0")


def _embed_line(fp: Faceprint, image: str = "a.jpg") -> str:
    return json.dumps({"image": image, "face_index": 0, "detection": {}, "faceprint": fp.to_dict()})


def test_single_json_pretty_printed_and_embed_jsonl(tmp_path: Path) -> None:
    one = tmp_path / "one.json"
    one.write_text(json.dumps(_faceprint().to_dict(), indent=2))
    assert [fp.dim for fp in read_faceprint_file(one)] == [8]
    lines = tmp_path / "embed.jsonl"
    error = json.dumps({"image": "x.jpg", "error": {"code": "no_face", "message": "x", "details": {}}})
    lines.write_text("\n".join([_embed_line(_faceprint(value=1)), "", error, _embed_line(_faceprint(value=2))]) + "\n")
    assert [float(fp.vector[0]) for fp in read_faceprint_file(lines)] == [1.0, 2.0]
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + _faceprint().to_json().encode())
    assert len(read_faceprint_file(bom)) == 1


FP_DICT = _faceprint().to_dict()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty (0 bytes)"),
        (b"\n\n  \n", "only blank lines"),
        (b"hello, I am not json", "line 1: not JSON"),
        (b"[1, 2, 3]", "a JSON list, not a faceprint object"),
        (b'"a string"', "a JSON string, not a faceprint object"),
        (b"42", "a JSON number"),
        (b"null", "JSON null"),
        (b'{"name": "Jane"}', "not a faceprint (no 'format' or 'vector')"),
        (b'{"faceprint": [1, 2]}', "'faceprint' is"),
        (json.dumps({**FP_DICT, "format": "other/9"}).encode(), "not a faceprint/1 faceprint"),
        (json.dumps({**FP_DICT, "dim": 9}).encode(), "says dim=9 but holds 8"),
        (json.dumps({**FP_DICT, "vector": ["x"] * 8}).encode(), "malformed faceprint"),
        (json.dumps({**FP_DICT, "vector": []}).encode(), "dim=8"),
        (json.dumps({**FP_DICT, "vector": [1e999] * 8}).encode(), "finite"),
        ("caf\u00e9".encode("latin-1") + b' {"format": 1}', "line 1: byte 0xe9 is not UTF-8"),
        (b'{"image": "x.jpg", "error": {"code": "no_face"}}\n', "holds no faceprint"),
        ((_embed_line(_faceprint()) + "\n{broken\n").encode(), "line 2: not JSON"),
        ((_embed_line(_faceprint()) + "\n[1]\n").encode(), "line 2: a JSON list"),
        (b"\xff\xfe" + "[]".encode("utf-16-le"), "a JSON list"),
    ],
    ids=[
        "empty", "blank-lines", "not-json", "json-list", "json-string", "json-number", "json-null", "other-object",
        "faceprint-not-object", "wrong-format", "dim-mismatch-inside", "non-numeric", "empty-vector", "infinite",
        "latin-1", "only-errors", "bad-second-line", "list-second-line", "utf16-list",
    ],
)
def test_malformed_files_are_one_clear_error(tmp_path: Path, content: bytes, message: str) -> None:
    # issue 15 #15: each of these gave a traceback from `faceprint compare`
    path = tmp_path / "probe.json"
    path.write_bytes(content)
    with pytest.raises(FaceprintFormatError) as caught:
        read_faceprint_file(path)
    assert caught.value.code == "faceprint_format"
    assert message in caught.value.message
    assert caught.value.message.startswith(str(path))


def test_missing_folder_and_fifo(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError):
        read_faceprint_file(tmp_path / "nope.json")
    with pytest.raises(FaceprintFormatError, match="a folder"):
        read_faceprint_file(tmp_path)
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    with pytest.raises(NotRegularFileError):
        read_faceprint_file(fifo)  # would block forever if opened
    big = tmp_path / "big.json"
    big.write_bytes(b" " * 100)
    with pytest.raises(FaceprintFormatError, match="larger than"):
        read_faceprint_file(big, max_bytes=10)


def test_a_64_d_faceprint_against_a_128_d_one_is_a_clear_compare_error() -> None:
    with pytest.raises(ContractMismatchError) as caught:
        check_comparable(_faceprint(64), _faceprint(128), names=("a.json", "b.json"))
    assert caught.value.code == "contract_mismatch"
    assert "64-d" in caught.value.message and "b.json" in caught.value.message
    with pytest.raises(ContractMismatchError):
        check_comparable(_faceprint(8), _faceprint(8, contract="other:2"))
    check_comparable(_faceprint(8), _faceprint(8, value=2.0))
