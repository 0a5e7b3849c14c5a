from __future__ import annotations

from pathlib import Path

import pytest

from faceprint.errors import CsvFormatError, InputError
from faceprint.evaluate.pairs_list import (
    LabeledPair,
    PairsListFormatError,
    parse_label,
    parse_lfw_pairs,
    parse_pairs_csv,
    read_pairs_list,
)

VIEW1 = "2\nAnn\t1\t2\nBob\t3\t4\nAnn\t1\tBob\t3\nCid\t2\tDee\t10\n"


def test_lfw_view1_pairs_paths_labels_and_no_folds() -> None:
    pairs = parse_lfw_pairs(VIEW1)
    assert pairs == [
        LabeledPair("Ann/Ann_0001.jpg", "Ann/Ann_0002.jpg", True, None),
        LabeledPair("Bob/Bob_0003.jpg", "Bob/Bob_0004.jpg", True, None),
        LabeledPair("Ann/Ann_0001.jpg", "Bob/Bob_0003.jpg", False, None),
        LabeledPair("Cid/Cid_0002.jpg", "Dee/Dee_0010.jpg", False, None),
    ]


def test_lfw_view2_sets_folds_from_block_position(tmp_path: Path) -> None:
    # 10 folds of 2 genuine + 2 impostor pairs, written the way pairs.txt is: "10 2", then fold by fold.
    lines = ["10 2"]
    for fold in range(10):
        lines += [f"P{fold}_a 1 2", f"P{fold}_b 1 3", f"P{fold}_a 1 P{fold}_b 1", f"P{fold}_c 4 P{fold}_d 5"]
    path = tmp_path / "pairs.txt"
    path.write_text("\n".join(lines) + "\n")

    pairs = read_pairs_list(path)

    assert len(pairs) == 40
    assert [p.fold for p in pairs] == [fold for fold in range(10) for _ in range(4)]
    assert [p.is_same for p in pairs[:4]] == [True, True, False, False]
    assert pairs[-1] == LabeledPair("P9_c/P9_c_0004.jpg", "P9_d/P9_d_0005.jpg", False, 9)


def test_lfw_accepts_spaces_blank_lines_and_crlf() -> None:
    pairs = parse_lfw_pairs("1\r\n\r\nAnn 1 2\r\nAnn  1   Bob 2\r\n\r\n")
    assert [p.is_same for p in pairs] == [True, False]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("", None, "empty"),
        ("two\nAnn 1 2\n", 1, "header"),
        ("0\n", 1, "header"),
        ("1\nAnn 1 Bob 2\nCid 1 2\n", 2, "genuine"),  # impostor line where a genuine one is due
        ("1\nAnn 1 2\nCid 1 2\n", 3, "impostor"),
        ("1\nAnn 1 x\nAnn 1 Bob 2\n", 2, "not an integer"),
        ("1\nAnn 0 2\nAnn 1 Bob 2\n", 2, "1 or more"),
        ("1\n../etc 1 2\nAnn 1 Bob 2\n", 2, "plain folder name"),
        ("1\nAnn 1 2\nAnn 1 Bob 2\nCid 1 2\n", 4, "has more"),
        ("2\nAnn 1 2\nBob 1 2\nAnn 1 Bob 2\n", 5, "ends after 3"),  # truncated file
        ("10 1\nAnn 1 2\nAnn 1 Bob 2\n", 4, "ends after 2"),
    ],
)
def test_lfw_malformed_lines_name_the_line(text: str, line: int | None, message: str) -> None:
    with pytest.raises(PairsListFormatError, match=message) as excinfo:
        parse_lfw_pairs(text, source="pairs.txt")
    assert excinfo.value.details["line"] == line
    assert excinfo.value.details["source"] == "pairs.txt"
    if line is not None:
        assert f"line {line}:" in str(excinfo.value)


def test_pairs_list_errors_belong_to_the_csv_error_family() -> None:
    assert issubclass(PairsListFormatError, CsvFormatError)
    assert issubclass(PairsListFormatError, InputError)
    assert PairsListFormatError.code == "malformed_pairs_list"


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("1", True),
        ("0", False),
        ("TRUE", True),
        ("false", False),
        (" Same ", True),
        ("different", False),
        ("yes", True),
        ("No", False),
        ("2", None),
        ("", None),
        ("label", None),
    ],
)
def test_parse_label(cell: str, expected: bool | None) -> None:
    assert parse_label(cell) is expected


def test_csv_with_header() -> None:
    pairs = parse_pairs_csv("file1,file2,label\na.jpg,b.jpg,1\nc.jpg,d.jpg,different\n")
    assert pairs == [LabeledPair("a.jpg", "b.jpg", True), LabeledPair("c.jpg", "d.jpg", False)]


def test_csv_without_header_keeps_first_row() -> None:
    pairs = parse_pairs_csv("a.jpg,b.jpg,same\nc.jpg,d.jpg,no\n")
    assert [(p.path_a, p.is_same) for p in pairs] == [("a.jpg", True), ("c.jpg", False)]


def test_csv_fold_column_quotes_and_blank_rows() -> None:
    text = 'path_a,path_b,is_same,fold\n"dir, with comma/a.jpg",b.jpg,yes,3\n\nc.jpg,d.jpg,false,0\n'
    pairs = parse_pairs_csv(text)
    assert pairs == [
        LabeledPair("dir, with comma/a.jpg", "b.jpg", True, 3),
        LabeledPair("c.jpg", "d.jpg", False, 0),
    ]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("file1,file2,label\na.jpg,b.jpg,maybe\n", 2, "label 'maybe'"),
        ("a.jpg,b.jpg,genuinely\n", 1, "header's label column"),  # neither a label nor a header name
        ("a.jpg,b.jpg\n", 1, "3 or 4 columns"),
        ("a.jpg,b.jpg,1\nc.jpg,d.jpg,0,7\n", 2, "expected 3 columns"),
        ("a.jpg,,1\n", 1, "empty file path"),
        ("a,b,label,fold\nx.jpg,y.jpg,1,first\n", 2, "fold 'first'"),
        ("file1,file2,label\n", None, "no pairs"),
    ],
)
def test_csv_malformed_rows_name_the_line(text: str, line: int | None, message: str) -> None:
    with pytest.raises(PairsListFormatError, match=message) as excinfo:
        parse_pairs_csv(text, source="pairs.csv")
    assert excinfo.value.details["line"] == line


def test_read_pairs_list_picks_the_format_by_content(tmp_path: Path) -> None:
    csv_path = tmp_path / "pairs.txt"  # a CSV under a .txt name: the comma decides
    csv_path.write_text("\ufefffile1,file2,label\na.jpg,b.jpg,1\n", encoding="utf-8")  # with a BOM
    lfw_path = tmp_path / "lfw.txt"
    lfw_path.write_text(VIEW1)

    assert read_pairs_list(csv_path) == [LabeledPair("a.jpg", "b.jpg", True)]
    assert len(read_pairs_list(lfw_path)) == 4


def test_read_pairs_list_rejects_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_bytes(b"a.jpg,b\xff.jpg,1\n")
    with pytest.raises(PairsListFormatError, match="not UTF-8"):
        read_pairs_list(path)
