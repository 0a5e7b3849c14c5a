"""Safe dataset reading and deterministic TAR.GZ writing (faceprint.io.archive)."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from faceprint.errors import (
    ArchiveError,
    MissingFileError,
    NotRegularFileError,
    UnreadableMemberError,
    UnsafeArchiveMemberError,
)
from faceprint.io.archive import (
    ArchiveLimits,
    Dataset,
    detect_kind,
    normalize_member_name,
    write_deterministic_targz,
)
from faceprint.io.atomic import write_atomic

TarMember = tuple[str, bytes | None, Callable[[tarfile.TarInfo], None] | None]


def _file(name: str, data: bytes) -> TarMember:
    return (name, data, None)


def _special(name: str, setup: Callable[[tarfile.TarInfo], None]) -> TarMember:
    return (name, None, setup)


def build_tar(path: Path, members: list[TarMember], *, gz: bool = False) -> Path:
    """Write a TAR (or TAR.GZ) holding exactly ``members``, odd ones included, without touching the disk."""
    with tarfile.open(path, "w:gz" if gz else "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, setup in members:
            info = tarfile.TarInfo(name)
            if setup is not None:
                setup(info)
                tar.addfile(info)
            else:
                assert data is not None
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def _symlink(target: str) -> Callable[[tarfile.TarInfo], None]:
    def setup(info: tarfile.TarInfo) -> None:
        info.type = tarfile.SYMTYPE
        info.linkname = target

    return setup


def _hardlink(target: str) -> Callable[[tarfile.TarInfo], None]:
    def setup(info: tarfile.TarInfo) -> None:
        info.type = tarfile.LNKTYPE
        info.linkname = target

    return setup


def _typed(kind: bytes) -> Callable[[tarfile.TarInfo], None]:
    def setup(info: tarfile.TarInfo) -> None:
        info.type = kind
        info.devmajor, info.devminor = 1, 3

    return setup


def _dir(info: tarfile.TarInfo) -> None:
    info.type = tarfile.DIRTYPE
    info.mode = 0o755


# --- folders ------------------------------------------------------------------------------------------


def test_folder_lists_nested_files_sorted_with_sizes_and_reads_them(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.jpg").write_bytes(b"zz")
    (tmp_path / "a.jpg").write_bytes(b"a")
    (tmp_path / "c.csv").write_bytes(b"ccc")
    with Dataset(tmp_path) as dataset:
        assert dataset.kind == "directory"
        assert [(m.name, m.size) for m in dataset.members] == [("a.jpg", 1), ("b/z.jpg", 2), ("c.csv", 3)]
        assert dataset.read("b/z.jpg") == b"zz"
        assert dataset.rejected == ()
        with pytest.raises(MissingFileError):
            dataset.read("nope.jpg")


def test_folder_symlink_inside_root_is_read_but_outside_root_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"secret")
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "real.jpg").write_bytes(b"real")
    (root / "inside.jpg").symlink_to(root / "real.jpg")
    (root / "escape.jpg").symlink_to(outside)
    (root / "loop").symlink_to(root, target_is_directory=True)
    (root / "dangling.jpg").symlink_to(root / "gone.jpg")
    with Dataset(root) as dataset:
        assert dataset.names == ("inside.jpg", "real.jpg")
        assert dataset.read("inside.jpg") == b"real"
        refused = {str(err.details["name"]): err.message for err in dataset.rejected}
        assert set(refused) == {"escape.jpg", "loop", "dangling.jpg"}
        assert "outside" in refused["escape.jpg"]
        assert all(err.code == "unsafe_archive_member" for err in dataset.rejected)
        with pytest.raises(UnsafeArchiveMemberError):
            dataset.read("escape.jpg")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs need a POSIX system")
def test_folder_fifo_is_refused_and_never_opened(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.jpg")  # opening it for reading would block forever
    (tmp_path / "ok.jpg").write_bytes(b"ok")
    with Dataset(tmp_path) as dataset:
        assert dataset.names == ("ok.jpg",)
        assert [err.details["name"] for err in dataset.rejected] == ["pipe.jpg"]


def test_folder_oversized_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "big.jpg").write_bytes(b"x" * 101)
    (tmp_path / "small.jpg").write_bytes(b"x" * 100)
    with Dataset(tmp_path, limits=ArchiveLimits(max_member_bytes=100)) as dataset:
        assert dataset.names == ("small.jpg",)
        assert "above the limit" in dataset.rejected[0].message


def test_folder_with_too_many_entries_is_unreadable(tmp_path: Path) -> None:
    for i in range(5):
        (tmp_path / f"{i}.jpg").write_bytes(b"x")
    with pytest.raises(UnsafeArchiveMemberError, match="more than 4 entries"):
        Dataset(tmp_path, limits=ArchiveLimits(max_members=4)).open()


def test_preload_reads_matching_members_up_front(tmp_path: Path) -> None:
    (tmp_path / "pairs.csv").write_bytes(b"a,b\n")
    (tmp_path / "a.jpg").write_bytes(b"a")
    dataset = Dataset(tmp_path, preload=lambda name: name.endswith(".csv"))
    with dataset:
        (tmp_path / "pairs.csv").write_bytes(b"changed")
        assert dataset.read("pairs.csv") == b"a,b\n"  # the copy read when the dataset was opened


# --- kind detection ---------------------------------------------------------------------------------------


def test_kind_is_detected_from_content_not_extension(tmp_path: Path) -> None:
    gz_named_dat = build_tar(tmp_path / "data.dat", [_file("a.jpg", b"a")], gz=True)
    plain_named_tgz = build_tar(tmp_path / "plain.tgz", [_file("a.jpg", b"a")])
    assert detect_kind(gz_named_dat) == "tar.gz"
    assert detect_kind(plain_named_tgz) == "tar"
    with Dataset(gz_named_dat) as dataset:
        assert dataset.read("a.jpg") == b"a"
    with Dataset(plain_named_tgz) as dataset:
        assert dataset.read("a.jpg") == b"a"


def test_old_v7_tar_without_magic_is_recognised(tmp_path: Path) -> None:
    path = tmp_path / "old.tar"
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("a.jpg")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"a"))
    raw = bytearray(path.read_bytes())
    raw[257:265] = b"\0" * 8  # strip the ustar magic and version ...
    raw[148:156] = b" " * 8
    raw[148:156] = f"{sum(raw[:512]):06o}\0 ".encode()  # ... and fix the checksum, as a v7 tar has it
    path.write_bytes(bytes(raw))
    assert detect_kind(path) == "tar"


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty file"), (b"hello, world\n" * 100, "not a folder, .tar"), (b"PK\x03\x04" + b"\0" * 600, "not a")],
    ids=["empty", "text", "zip"],
)
def test_non_archives_are_refused(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "input.tar.gz"
    path.write_bytes(content)
    with pytest.raises(ArchiveError, match=message):
        Dataset(path).open()


def test_missing_path_is_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError):
        detect_kind(tmp_path / "nope.tar")


def test_truncated_targz_is_an_archive_error(tmp_path: Path) -> None:
    path = build_tar(tmp_path / "d.tar.gz", [_file(f"{i}.jpg", os.urandom(5000)) for i in range(5)], gz=True)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ArchiveError, match=r"not a readable tar\.gz archive"):
        Dataset(path).open()


def test_gzip_that_is_not_a_tar_is_an_archive_error(tmp_path: Path) -> None:
    path = tmp_path / "x.tar.gz"
    path.write_bytes(gzip.compress(b"just some text, not a tar" * 50))
    with pytest.raises(ArchiveError):
        Dataset(path).open()


# --- unsafe TAR members -----------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["tar", "tar.gz"])
@pytest.mark.parametrize(
    ("member", "refused_name", "reason"),
    [
        (_file("/abs/evil.jpg", b"x"), None, "absolute"),
        (_file("C:evil.jpg", b"x"), None, "absolute"),
        (_file("../evil.jpg", b"x"), None, "'..'"),
        (_file("a/../../evil.jpg", b"x"), None, "'..'"),
        (_file("a\\..\\..\\evil.jpg", b"x"), None, "'..'"),
        (_special("link.jpg", _symlink("/etc/passwd")), "link.jpg", "symbolic link"),
        (_special("hard.jpg", _hardlink("good.jpg")), "hard.jpg", "hard link"),
        (_special("dev.jpg", _typed(tarfile.CHRTYPE)), "dev.jpg", "device"),
        (_special("blk.jpg", _typed(tarfile.BLKTYPE)), "blk.jpg", "device"),
        (_special("fifo.jpg", _typed(tarfile.FIFOTYPE)), "fifo.jpg", "FIFO"),
    ],
    ids=[
        "absolute",
        "drive",
        "dotdot",
        "inner-dotdot",
        "backslash-dotdot",
        "symlink",
        "hardlink",
        "chr",
        "blk",
        "fifo",
    ],
)
def test_unsafe_members_are_refused_and_the_rest_still_read(
    tmp_path: Path, gz: bool, member: TarMember, refused_name: str | None, reason: str
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    path = build_tar(tmp_path / "d.tar", [_file("good.jpg", b"good"), member], gz=gz)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with Dataset(path) as dataset:
        assert dataset.names == ("good.jpg",)
        assert dataset.read("good.jpg") == b"good"
        assert len(dataset.rejected) == 1
        error = dataset.rejected[0]
        assert error.code == "unsafe_archive_member"
        assert reason in error.message
        if refused_name is not None:
            assert dataset.rejected_names[refused_name] is error
            with pytest.raises(UnsafeArchiveMemberError):
                dataset.read(refused_name)
        assert list(dataset.iter_read(["good.jpg"])) == [("good.jpg", b"good")]
    # Nothing was extracted: no file appeared anywhere under the test folder, nor at the absolute target.
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert not Path("/abs/evil.jpg").exists()


def test_duplicate_names_refuse_every_copy(tmp_path: Path) -> None:
    path = build_tar(
        tmp_path / "d.tar",
        [_file("a.jpg", b"first"), _file("b.jpg", b"b"), _file("./a.jpg", b"second"), _file("a.jpg", b"third")],
    )
    with Dataset(path) as dataset:
        assert dataset.names == ("b.jpg",)
        assert "more than once" in dataset.rejected_names["a.jpg"].message
        with pytest.raises(UnsafeArchiveMemberError):
            dataset.read("a.jpg")


def test_oversized_member_is_refused(tmp_path: Path) -> None:
    path = build_tar(tmp_path / "d.tar.gz", [_file("big.jpg", b"x" * 2000), _file("ok.jpg", b"ok")], gz=True)
    with Dataset(path, limits=ArchiveLimits(max_member_bytes=1000)) as dataset:
        assert dataset.names == ("ok.jpg",)
        assert dataset.rejected_names["big.jpg"].details["size"] == 2000


def test_too_many_members_make_the_archive_unreadable(tmp_path: Path) -> None:
    path = build_tar(tmp_path / "d.tar", [_file(f"{i}.jpg", b"x") for i in range(11)])
    with pytest.raises(UnsafeArchiveMemberError, match="more than 10 entries"):
        Dataset(path, limits=ArchiveLimits(max_members=10)).open()


def test_total_bytes_limit(tmp_path: Path) -> None:
    path = build_tar(tmp_path / "d.tar", [_file(f"{i}.jpg", b"x" * 100) for i in range(3)])
    with pytest.raises(ArchiveError, match="more than 250 bytes"):
        Dataset(path, limits=ArchiveLimits(max_total_bytes=250)).open()


def test_folders_in_archives_are_not_members_and_names_are_normalised(tmp_path: Path) -> None:
    path = build_tar(
        tmp_path / "d.tgz",
        [_special("./", _dir), _special("./photos", _dir), _file("./photos//a.jpg", b"a"), _file("pairs.csv", b"p")],
        gz=True,
    )
    with Dataset(path) as dataset:
        assert dataset.names == ("photos/a.jpg", "pairs.csv")
        assert dataset.rejected == ()


def test_targz_iter_read_follows_archive_order_and_reports_unknown_names(tmp_path: Path) -> None:
    members = [_file(name, name.encode()) for name in ("z.jpg", "a.jpg", "m/b.jpg")]
    path = build_tar(tmp_path / "d.tar.gz", members, gz=True)
    with Dataset(path, preload=lambda name: name == "m/b.jpg") as dataset:
        got = list(dataset.iter_read(["a.jpg", "m/b.jpg", "z.jpg", "missing.jpg"]))
    assert [name for name, _ in got] == ["z.jpg", "a.jpg", "m/b.jpg", "missing.jpg"]
    assert [data for _, data in got[:3]] == [b"z.jpg", b"a.jpg", b"m/b.jpg"]
    assert isinstance(got[3][1], MissingFileError)


def test_reading_after_close_fails_cleanly(tmp_path: Path) -> None:
    path = build_tar(tmp_path / "d.tar", [_file("a.jpg", b"a")])
    with Dataset(path) as dataset:
        pass
    with pytest.raises(ArchiveError, match="closed"):
        dataset.read("a.jpg")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("a.jpg", "a.jpg"), ("./x/./y.jpg", "x/y.jpg"), ("x//y.jpg", "x/y.jpg"), ("dir/", "dir")],
)
def test_normalize_member_name(raw: str, expected: str) -> None:
    assert normalize_member_name(raw) == expected


@pytest.mark.parametrize("raw", ["", "/a", "\\a", "D:\\a", "..", "a/../b", "a\0b"])
def test_normalize_member_name_refuses(raw: str) -> None:
    with pytest.raises(UnsafeArchiveMemberError):
        normalize_member_name(raw)


# --- writing --------------------------------------------------------------------------------------------------


def test_targz_is_deterministic_and_normalised(tmp_path: Path) -> None:
    files = {"input-0002/output.csv": b"b\n", "input-0001/output.csv": b"a\n", "input-0001/run.json": b"{}"}
    first = write_deterministic_targz(files, tmp_path / "one.tar.gz").read_bytes()
    os.utime(tmp_path, (1, 1))  # nothing about the clock or the folder may leak into the bytes
    second = write_deterministic_targz(list(reversed(files.items())), tmp_path / "two.tar.gz").read_bytes()
    assert first == second
    assert first[4:8] == b"\0\0\0\0"  # gzip header mtime
    with tarfile.open(tmp_path / "one.tar.gz") as tar:
        infos = tar.getmembers()
        assert [i.name for i in infos] == [
            "input-0001",
            "input-0001/output.csv",
            "input-0001/run.json",
            "input-0002",
            "input-0002/output.csv",
        ]
        assert {(i.mtime, i.uid, i.gid, i.uname, i.gname) for i in infos} == {(0, 0, 0, "", "")}
        assert {i.name: i.mode for i in infos if i.isdir()} == {"input-0001": 0o755, "input-0002": 0o755}
        assert {i.mode for i in infos if i.isfile()} == {0o644}
        extracted = tar.extractfile("input-0001/output.csv")
        assert extracted is not None and extracted.read() == b"a\n"


@pytest.mark.parametrize("name", ["/abs.csv", "../x.csv", "a/../b.csv", "./a.csv", "a//b.csv", "dir/"])
def test_targz_refuses_bad_names_and_writes_nothing(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError):
        write_deterministic_targz({name: b"x"}, tmp_path / "out.tar.gz")
    assert list(tmp_path.iterdir()) == []


def test_targz_refuses_duplicate_and_file_folder_clash(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="twice"):
        write_deterministic_targz([("a.csv", b"1"), ("a.csv", b"2")], tmp_path / "o.tar.gz")
    with pytest.raises(ValueError, match="both as file and folder"):
        write_deterministic_targz({"a": b"1", "a/b": b"2"}, tmp_path / "o.tar.gz")


def test_targz_write_is_atomic_when_interrupted(tmp_path: Path) -> None:
    out = tmp_path / "results.tar.gz"
    out.write_bytes(b"previous complete archive")

    def exploding() -> Iterator[tuple[str, bytes]]:
        yield "a.csv", b"1"
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        write_deterministic_targz(exploding(), out)
    assert out.read_bytes() == b"previous complete archive"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.tar.gz"]  # no temp file left behind


def test_targz_failure_during_writing_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "results.tar.gz"
    real_addfile = tarfile.TarFile.addfile
    calls = {"n": 0}

    def failing_addfile(self: tarfile.TarFile, info: tarfile.TarInfo, fileobj: object = None) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("no space left on device")
        real_addfile(self, info, fileobj)  # type: ignore[arg-type]

    monkeypatch.setattr(tarfile.TarFile, "addfile", failing_addfile)
    with pytest.raises(OSError, match="no space"):
        write_deterministic_targz({"d/a.csv": b"1", "d/b.csv": b"2", "d/c.csv": b"3"}, out)
    assert list(tmp_path.iterdir()) == []


def test_write_atomic_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "output.csv"
    target.write_bytes(b"old")
    write_atomic(target, b"new content")
    assert target.read_bytes() == b"new content"
    assert [p.name for p in tmp_path.iterdir()] == ["output.csv"]


def test_written_targz_reads_back_as_a_dataset(tmp_path: Path) -> None:
    out = write_deterministic_targz({"x/pairs.csv": b"a,b\n", "x/a.jpg": b"A"}, tmp_path / "r.tar.gz")
    with Dataset(out) as dataset:
        assert dataset.kind == "tar.gz"
        assert dataset.names == ("x/a.jpg", "x/pairs.csv")
        assert dataset.read("x/a.jpg") == b"A"


# --- hostile-probe regressions (issue 15) ---------------------------------------------------------------------


def _corrupt_crc(path: Path) -> bytes:
    """The archive's bytes with its gzip trailer CRC-32 flipped (the data itself decompresses fine)."""
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF
    return bytes(data)


def test_targz_with_a_bad_gzip_crc_is_refused(tmp_path: Path) -> None:
    # issue 15 #7: tarfile stops at the end-of-archive blocks and never checks the trailer
    members = [_file("pairs.csv", b"a.jpg,b.jpg\n"), _file("a.jpg", b"A" * 5000)]
    good = build_tar(tmp_path / "good.tgz", members, gz=True)
    with Dataset(good) as dataset:
        assert dataset.read("a.jpg") == b"A" * 5000
    bad = tmp_path / "bad.tgz"
    bad.write_bytes(_corrupt_crc(good))
    with pytest.raises(ArchiveError, match="corrupt gzip") as caught:
        Dataset(bad).open()
    assert caught.value.code == "archive_error"


def test_targz_with_corrupt_data_bytes_is_refused(tmp_path: Path) -> None:
    # Stored (level 0) deflate blocks: a flipped data byte decompresses "fine"; only the CRC can tell.
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("a.jpg")
        info.size = 4000
        tar.addfile(info, io.BytesIO(b"B" * 4000))
    packed = bytearray(gzip.compress(raw.getvalue(), compresslevel=0))
    packed[1000] ^= 0x01  # inside a.jpg's data
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(bytes(packed))
    with pytest.raises(ArchiveError, match="corrupt gzip"):
        Dataset(bad).open()


def test_a_fifo_dataset_path_is_refused_without_being_opened(tmp_path: Path) -> None:
    # issue 15 #6: detect_kind opened the path, and open() on a FIFO blocks forever
    fifo = tmp_path / "dataset.tgz"
    os.mkfifo(fifo)
    with pytest.raises(NotRegularFileError) as caught:
        detect_kind(fifo)
    assert caught.value.code == "not_regular_file"
    with pytest.raises(NotRegularFileError):
        Dataset(Path("/dev/null")).open()


def test_one_unreadable_sub_folder_is_refused_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # issue 15 #9: a folder the user cannot list failed the whole dataset. Root can list anything, so the
    # permission error is made where os.scandir meets that one folder.
    root = tmp_path / "ds"
    (root / "locked").mkdir(parents=True)
    (root / "locked" / "x.jpg").write_bytes(b"X")
    (root / "open").mkdir()
    (root / "open" / "a.jpg").write_bytes(b"A")
    (root / "pairs.csv").write_bytes(b"open/a.jpg,locked/x.jpg\n")
    real_scandir = os.scandir

    def scandir(path: str) -> object:
        if os.path.basename(path) == "locked":
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr("faceprint.io.archive.os.scandir", scandir)
    with Dataset(root) as dataset:
        assert dataset.names == ("open/a.jpg", "pairs.csv")
        (refused,) = dataset.rejected
        assert isinstance(refused, UnreadableMemberError) and refused.code == "unreadable_member"
        assert "locked" in refused.message and "Permission denied" in refused.message
        assert dataset.rejected_names["locked"] is refused
    def nothing_readable(path: str) -> object:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr("faceprint.io.archive.os.scandir", nothing_readable)
    with pytest.raises(ArchiveError, match="cannot list folder"):
        Dataset(root).open()
