"""pairs.csv parsing, pairs-file discovery and name resolution (faceprint.batch.pairs_csv)."""

from __future__ import annotations

import codecs

import pytest

from faceprint.batch.pairs_csv import (
    NameResolver,
    PairsTable,
    find_pairs_file,
    parse_pairs_csv,
    sniff_delimiter,
)
from faceprint.errors import (
    AmbiguousFileError,
    CsvFormatError,
    MissingFileError,
    PairsFileError,
    UnsafeArchiveMemberError,
)


def pairs_of(table: PairsTable) -> list[tuple[str, str]]:
    return [(row.file_a, row.file_b) for row in table.rows]


@pytest.mark.parametrize(
    ("data", "delimiter", "header", "encoding"),
    [
        (b"a.jpg,b.jpg\nc.jpg,d.jpg\n", ",", None, "utf-8"),
        (b"file_a,file_b\na.jpg,b.jpg\nc.jpg,d.jpg\n", ",", ("file_a", "file_b"), "utf-8"),
        (b"a.jpg;b.jpg\r\nc.jpg;d.jpg\r\n", ";", None, "utf-8"),
        (b"image1;image2\r\na.jpg;b.jpg\r\nc.jpg;d.jpg", ";", ("image1", "image2"), "utf-8"),
        (b"a.jpg\tb.jpg\nc.jpg\td.jpg\n", "\t", None, "utf-8"),
        (b"left\tright\na.jpg\tb.jpg\nc.jpg\td.jpg\n", "\t", ("left", "right"), "utf-8"),
        (codecs.BOM_UTF8 + b"a.jpg,b.jpg\nc.jpg,d.jpg\n", ",", None, "utf-8-sig"),
        (codecs.BOM_UTF8 + b"first,second\na.jpg,b.jpg\nc.jpg,d.jpg\n", ",", ("first", "second"), "utf-8-sig"),
        ("a\tb\na.jpg\tb.jpg\nc.jpg\td.jpg\n".encode("utf-16"), "\t", ("a", "b"), "utf-16"),
        (b"\n\na.jpg,b.jpg\n\n   \nc.jpg,d.jpg\n\n", ",", None, "utf-8"),
        (b"a.jpg, b.jpg\n c.jpg ,d.jpg\n", ",", None, "utf-8"),
    ],
    ids=[
        "comma",
        "comma-header",
        "semicolon-crlf",
        "semicolon-header-no-final-newline",
        "tab",
        "tab-header",
        "bom",
        "bom-header",
        "utf16",
        "blank-lines",
        "spaces-around-names",
    ],
)
def test_formats(data: bytes, delimiter: str, header: tuple[str, ...] | None, encoding: str) -> None:
    table = parse_pairs_csv(data)
    assert table.delimiter == delimiter
    assert table.header == header
    assert table.encoding == encoding
    assert pairs_of(table) == [("a.jpg", "b.jpg"), ("c.jpg", "d.jpg")]
    assert all(row.ok for row in table.rows)
    assert [row.row for row in table.rows] == [1, 2]


def test_quoted_names_with_commas_quotes_spaces_and_newlines() -> None:
    data = b'"Doe, John.jpg","my photo.jpg"\n"say ""cheese"".png",\'q.jpg\'\n'
    table = parse_pairs_csv(data)
    assert pairs_of(table) == [("Doe, John.jpg", "my photo.jpg"), ('say "cheese".png', "'q.jpg'")]


def test_semicolon_file_with_unquoted_commas_in_names() -> None:
    table = parse_pairs_csv(b"Doe, John.jpg;Doe, Jane.jpg\nRoe, R.jpg;Poe, P.jpg\n")
    assert table.delimiter == ";"
    assert pairs_of(table) == [("Doe, John.jpg", "Doe, Jane.jpg"), ("Roe, R.jpg", "Poe, P.jpg")]


def test_sniff_prefers_the_delimiter_that_splits_every_row() -> None:
    assert sniff_delimiter("a;1.jpg,b.jpg\nc.jpg,d.jpg\n") == ","
    assert sniff_delimiter("one column only\n") == ","


def test_extra_columns_are_kept_and_named() -> None:
    table = parse_pairs_csv(b"a,b,case,note\nx.jpg,y.jpg,17,hello\nz.jpg,w.jpg\nu.jpg,v.jpg,1,2,3\n")
    assert [row.extra for row in table.rows] == [("17", "hello"), (), ("1", "2", "3")]
    assert table.extra_width == 3
    assert table.extra_header() == ("case", "note", "extra_3")


def test_extra_columns_without_header_get_generic_names() -> None:
    table = parse_pairs_csv(b"x.jpg,y.jpg,17\n")
    assert table.header is None
    assert table.extra_header() == ("extra_1",)


def test_malformed_rows_become_row_errors_and_the_rest_is_read() -> None:
    data = b"a.jpg,b.jpg\nonly-one.jpg\n,c.jpg\nd.jpg,\ncaf\xe9.jpg,e.jpg\nf.jpg,g.jpg\n"
    table = parse_pairs_csv(data)
    assert [(r.row, r.line, r.error_code) for r in table.rows] == [
        (1, 1, None),
        (2, 2, "malformed_csv"),
        (3, 3, "malformed_csv"),
        (4, 4, "malformed_csv"),
        (5, 5, "malformed_csv"),
        (6, 6, None),
    ]
    messages = [r.error_message for r in table.rows]
    assert messages[1] is not None and "found one column" in messages[1]
    assert messages[2] is not None and "empty file name in column 1" in messages[2]
    assert messages[3] is not None and "empty file name in column 2" in messages[3]
    assert messages[4] is not None and "not valid UTF-8" in messages[4]
    # The undecodable byte is shown as U+FFFD so the name can still be written to UTF-8 output.
    assert table.rows[4].file_a == "caf\ufffd.jpg"
    assert pairs_of(table)[-1] == ("f.jpg", "g.jpg")


def test_csv_syntax_error_is_a_row_error() -> None:
    huge = b'"' + b"x" * 200_000 + b'"'  # above the csv module's field size limit
    table = parse_pairs_csv(b"a.jpg,b.jpg\n" + huge + b",c.jpg\nd.jpg,e.jpg\n")
    assert table.rows[0].ok and table.rows[-1].ok
    assert table.rows[1].error_code == "malformed_csv"
    assert table.rows[1].error_message is not None and "cannot parse" in table.rows[1].error_message
    assert pairs_of(table)[-1] == ("d.jpg", "e.jpg")


def test_nul_in_a_name_is_a_row_error() -> None:
    table = parse_pairs_csv(b"a\x00.jpg,b.jpg\nc.jpg,d.jpg\n")
    assert table.rows[0].error_code == "malformed_csv"
    assert table.rows[1].ok


def test_line_numbers_follow_the_file_with_blank_lines_and_quoted_newlines() -> None:
    table = parse_pairs_csv(b'h1,h2\n\n"multi\nline.jpg",b.jpg\n\nc.jpg,d.jpg\n')
    assert [(r.row, r.line) for r in table.rows] == [(1, 3), (2, 6)]
    assert table.rows[0].file_a == "multi\nline.jpg"


def test_header_detection_uses_the_file_check() -> None:
    # Names without an image suffix: only the dataset can tell that "img001" is a file.
    known = {"img001", "img002", "img003", "img004"}
    data = b"img001,img002\nimg003,img004\n"
    assert parse_pairs_csv(data).header == ("img001", "img002")
    table = parse_pairs_csv(data, looks_like_file=lambda cell: cell in known)
    assert table.header is None
    assert pairs_of(table) == [("img001", "img002"), ("img003", "img004")]


@pytest.mark.parametrize(
    ("has_header", "expected_rows"),
    [(True, [("c.jpg", "d.jpg")]), (False, [("a.jpg", "b.jpg"), ("c.jpg", "d.jpg")])],
)
def test_header_can_be_forced(has_header: bool, expected_rows: list[tuple[str, str]]) -> None:
    assert pairs_of(parse_pairs_csv(b"a.jpg,b.jpg\nc.jpg,d.jpg\n", has_header=has_header)) == expected_rows


def test_a_one_column_first_row_is_data_not_a_header() -> None:
    table = parse_pairs_csv(b"garbage\na.jpg,b.jpg\n")
    assert table.header is None
    assert table.rows[0].error_code == "malformed_csv"


def test_empty_file_has_no_rows() -> None:
    table = parse_pairs_csv(b"")
    assert table.rows == () and table.header is None


def test_row_limit() -> None:
    with pytest.raises(CsvFormatError, match="more than 2 rows"):
        parse_pairs_csv(b"a.jpg,b.jpg\n" * 3, max_rows=2)
    assert len(parse_pairs_csv(b"a.jpg,b.jpg\n" * 2, max_rows=2).rows) == 2


def test_bad_utf16_is_a_file_error() -> None:
    with pytest.raises(CsvFormatError, match="UTF-16"):
        parse_pairs_csv(codecs.BOM_UTF16_LE + b"a\x00,\x00\x00\xd8")


# --- finding pairs.csv ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["pairs.csv", "a.jpg"], "pairs.csv"),
        (["deep/er/pairs.csv", "deep/a.jpg"], "deep/er/pairs.csv"),
        (["data/PAIRS.CSV"], "data/PAIRS.CSV"),
        (["__MACOSX/data/pairs.csv", "data/pairs.csv", "data/._pairs.csv"], "data/pairs.csv"),
    ],
)
def test_find_pairs_file(names: list[str], expected: str) -> None:
    assert find_pairs_file(names) == expected


def test_find_pairs_file_none_or_several() -> None:
    with pytest.raises(PairsFileError, match=r"no pairs\.csv"):
        find_pairs_file(["a.jpg", "mypairs.csv"])
    with pytest.raises(PairsFileError, match=r"2 pairs\.csv files") as info:
        find_pairs_file(["a/pairs.csv", "b/pairs.csv"])
    assert info.value.code == "pairs_file_error"
    assert info.value.details["found"] == ["a/pairs.csv", "b/pairs.csv"]


# --- resolving names ----------------------------------------------------------------------------------------


MEMBERS = [
    "set/pairs.csv",
    "set/a.jpg",
    "set/people/ann/1.jpg",
    "set/people/bob/1.jpg",
    "set/people/bob/2.jpg",
    "top.jpg",
    "other/unique.png",
]


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("a.jpg", "set/a.jpg"),  # relative to the folder of pairs.csv
        ("./a.jpg", "set/a.jpg"),
        ("top.jpg", "top.jpg"),  # relative to the dataset root
        ("set/a.jpg", "set/a.jpg"),
        ("unique.png", "other/unique.png"),  # unique basename anywhere
        ("2.jpg", "set/people/bob/2.jpg"),
        ("bob/1.jpg", "set/people/bob/1.jpg"),  # unique path suffix
        ("people\\ann\\1.jpg", "set/people/ann/1.jpg"),  # Windows separators
        ("  a.jpg ", "set/a.jpg"),
    ],
)
def test_resolve(written: str, expected: str) -> None:
    assert NameResolver(MEMBERS, base_dir="set").resolve(written) == expected


def test_resolve_ambiguous_and_missing() -> None:
    resolver = NameResolver(MEMBERS, base_dir="set")
    with pytest.raises(AmbiguousFileError) as ambiguous:
        resolver.resolve("1.jpg")
    assert ambiguous.value.code == "ambiguous_file"
    assert ambiguous.value.details["candidates"] == ["set/people/ann/1.jpg", "set/people/bob/1.jpg"]
    for name in ("nope.jpg", "../set/a.jpg", "/set/a.jpg", "x/../../a.jpg"):
        with pytest.raises(MissingFileError) as missing:
            resolver.resolve(name)
        assert missing.value.code == "missing_file"
    assert resolver.exists("a.jpg") and not resolver.exists("1.jpg") and not resolver.exists("nope.jpg")


def test_resolve_refused_member_reports_why() -> None:
    refused = UnsafeArchiveMemberError("link.jpg: symbolic link", details={"name": "link.jpg"})
    resolver = NameResolver(["a.jpg"], rejected={"photos/link.jpg": refused})
    for written in ("photos/link.jpg", "link.jpg"):
        with pytest.raises(UnsafeArchiveMemberError) as info:
            resolver.resolve(written)
        assert info.value is refused


# --- hostile-probe regressions (issue 15) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "written",
    [
        "2019/face.jpg",  # issue 15 #3: another folder's face.jpg must never stand in
        "people/carl/1.jpg",
        "file:///set/a.jpg",  # a URI names no dataset file
        "file://set/a.jpg",
        "https://example.com/a.jpg",
        "C:\\photos\\a.jpg",
        "C:a.jpg",
    ],
)
def test_a_name_with_a_folder_never_falls_back_to_another_folders_basename(written: str) -> None:
    resolver = NameResolver([*MEMBERS, "set/2020/face.jpg"], base_dir="set")
    with pytest.raises(MissingFileError):
        resolver.resolve(written)


def test_a_bare_name_still_falls_back_to_its_unique_basename() -> None:
    resolver = NameResolver(["set/pairs.csv", "set/2020/face.jpg"], base_dir="set")
    assert resolver.resolve("face.jpg") == "set/2020/face.jpg"
    assert resolver.resolve("2020/face.jpg") == "set/2020/face.jpg"


def test_a_refused_member_with_a_folder_is_reported_only_for_its_own_folder() -> None:
    refused = UnsafeArchiveMemberError("a/link.jpg: symbolic link", details={"name": "a/link.jpg"})
    resolver = NameResolver([], rejected={"a/link.jpg": refused})
    with pytest.raises(UnsafeArchiveMemberError):
        resolver.resolve("a/link.jpg")
    with pytest.raises(MissingFileError):
        resolver.resolve("b/link.jpg")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # issue 15 #5: the quote opened on line 1 never closes; lines 2 and 3 are rows of their own
        (b'a.jpg,"b.jpg\nc.jpg,d.jpg\ne.jpg,f.jpg\n', [(1, "malformed_csv"), (2, None), (3, None)]),
        (b'a.jpg,"b.jpg\nc.jpg,d.jpg\ne.jpg,f.jpg', [(1, "malformed_csv"), (2, None), (3, None)]),
        (b'"a.jpg,b.jpg\nc.jpg,d.jpg\n', [(1, "malformed_csv"), (2, None)]),
        (b'a.jpg,b.jpg,"note\nc.jpg,d.jpg,x\ne.jpg,f.jpg\n', [(1, "malformed_csv"), (2, None), (3, None)]),
        (b'x.jpg,y.jpg\na.jpg,"b.jpg\r\nc.jpg,d.jpg\r\n', [(1, None), (2, "malformed_csv"), (3, None)]),
        # a closed multi-line note is one row, as spreadsheets write it
        (b'a.jpg,b.jpg,"first line\nsecond, line"\nc.jpg,d.jpg\n', [(1, None), (3, None)]),
    ],
)
def test_an_unterminated_quote_loses_no_later_row(data: bytes, expected: list[tuple[int, str | None]]) -> None:
    table = parse_pairs_csv(data)
    assert [(r.line, r.error_code) for r in table.rows] == expected
    assert [r.row for r in table.rows] == list(range(1, len(expected) + 1))
    assert all(r.file_b == "d.jpg" for r in table.rows if r.file_a == "c.jpg")
    bad = [r for r in table.rows if not r.ok]
    assert all("unterminated quote" in (r.error_message or "") for r in bad)


def test_extra_width_is_computed_once_not_per_call() -> None:
    # issue 15 #4: the writer asks per output row; a rescan per call made output O(n²)
    data = b"".join(b"a%d.jpg,b.jpg%s\n" % (i, b",x" * (i % 3)) for i in range(1000))
    table = parse_pairs_csv(data)
    assert table.extra_width == 2
    object.__setattr__(table, "rows", ())  # a rescan would now see no rows
    assert table.extra_width == 2
