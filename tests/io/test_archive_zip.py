"""ZIP datasets in faceprint.io.archive.Dataset: the same guarantees as TAR (nothing extracted, unsafe members
refused one by one, sizes bounded while reading), built in the tests with the stdlib zipfile."""

from __future__ import annotations

import io
import stat
import struct
import tarfile
import tracemalloc
import warnings
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from faceprint.batch.pairs import PairsOptions, run_pairs_job
from faceprint.errors import ArchiveError, FaceprintError
from faceprint.io.archive import ArchiveLimits, Dataset, EncryptedMemberError, detect_kind
from faceprint.testing import fake_pipeline_factory, make_face_png

RED = (200, 30, 30)
BLUE = (30, 30, 200)
QUIET_1 = PairsOptions(workers=1, quiet=True)

# A ZipInfo shaper: turns a fresh ZipInfo into the entry a hostile tool would write.
Shape = Callable[[zipfile.ZipInfo], None]


def write_zip(path: Path, members: Mapping[str, bytes | tuple[bytes, Shape]] | list[tuple[str, bytes]]) -> Path:
    items = list(members.items()) if isinstance(members, Mapping) else members
    encrypted: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about the duplicate names some cases need
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, content in items:
                info = zipfile.ZipInfo(name)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                data = content
                if isinstance(content, tuple):
                    data, shape = content
                    shape(info)
                if info.flag_bits & 0x1:
                    encrypted.append(name)
                archive.writestr(info, data)  # zipfile clears flag_bits when writing: set again below
    if encrypted:
        path.write_bytes(_with_encryption_flag(path.read_bytes(), encrypted))
    return path


def _with_encryption_flag(data: bytes, names: list[str]) -> bytes:
    """Set the "encrypted" bit of ``names`` in their local headers and central-directory entries."""
    raw = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        offsets = [archive.getinfo(name).header_offset for name in names]
    for offset in offsets:
        raw[offset + 6] |= 0x1
    at = raw.find(b"PK\x01\x02")
    while at >= 0:
        length = struct.unpack_from("<H", raw, at + 28)[0]
        if raw[at + 46 : at + 46 + length].decode() in names:
            raw[at + 8] |= 0x1
        at = raw.find(b"PK\x01\x02", at + 46)
    return bytes(raw)


def with_mode(mode: int) -> Shape:
    def shape(info: zipfile.ZipInfo) -> None:
        info.create_system = 3
        info.external_attr = mode << 16

    return shape


def dataset_files() -> dict[str, bytes]:
    return {
        "set/pairs.csv": b"red.png,photos/deep/red2.png\nred.png,blue.png\nred.png,missing.png\n",
        "set/red.png": make_face_png(RED),
        "set/photos/deep/red2.png": make_face_png(RED, size_wh=(40, 30)),
        "set/blue.png": make_face_png(BLUE),
    }


def read_all(path: Path, limits: ArchiveLimits | None = None) -> tuple[dict[str, bytes | str], dict[str, str]]:
    """(name -> bytes or error code) for every accepted member, and (refused name -> code)."""
    with Dataset(path, limits=limits) as dataset:
        assert dataset.kind == "zip"
        read = {
            name: (data if isinstance(data, bytes) else data.code) for name, data in dataset.iter_read(dataset.names)
        }
        refused = {str(err.details.get("name", "")): err.code for err in dataset.rejected}
    return read, refused


# --- detection ------------------------------------------------------------------------------------------------


def test_zip_is_told_by_content_not_by_name(tmp_path: Path) -> None:
    zipped = write_zip(tmp_path / "no-extension", {"a.txt": b"x"})
    empty = tmp_path / "empty.tar"  # an empty ZIP named like a TAR: its content decides
    zipfile.ZipFile(empty, "w").close()
    fake = tmp_path / "fake.zip"
    fake.write_bytes(b"PK but not a zip header at all")
    assert detect_kind(zipped) == "zip" and detect_kind(empty) == "zip"
    with pytest.raises(ArchiveError):
        detect_kind(fake)
    with Dataset(empty) as dataset:
        assert dataset.names == () and dataset.rejected == ()


# --- a good dataset reads the same as a folder and a TAR.GZ ----------------------------------------------------


def test_zip_dataset_scores_identically_to_folder_and_targz(tmp_path: Path) -> None:
    files = dataset_files()
    folder = tmp_path / "folder"
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    targz = tmp_path / "ds.tgz"
    with tarfile.open(targz, "w:gz") as tar:
        tar.add(folder / "set", arcname="set")
    zipped = write_zip(tmp_path / "ds.zip", {"set/": b"", **files})  # with a folder entry, which is skipped
    outputs: list[bytes] = []
    for source in (folder, targz, zipped):
        out = tmp_path / f"out-{source.name}.tar.gz"
        result = run_pairs_job([source], out, options=QUIET_1, pipeline_factory=fake_pipeline_factory)
        with tarfile.open(out) as tar:
            (csv_info,) = [info for info in tar.getmembers() if info.name.endswith("/output.csv")]
            extracted = tar.extractfile(csv_info)
            assert extracted is not None
            outputs.append(extracted.read())
        assert [(d.rows, d.scored, d.failed) for d in result.datasets] == [(3, 2, 1)]
    assert outputs[0] == outputs[1] == outputs[2]
    assert outputs[2].splitlines()[1:] == [
        b"red.png,photos/deep/red2.png,95.3%",
        b"red.png,blue.png,0.0%",
        b"red.png,missing.png,",
    ]
    with Dataset(zipped) as dataset:
        assert set(dataset.names) == set(files)
        assert dict(dataset.iter_read(dataset.names)) == files


# --- each unsafe kind refused alone, the rest read -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Unsafe:
    name: str
    content: bytes | tuple[bytes, Shape]
    code: str
    refused_as: str | None = None  # the name the refusal carries, when it is not ``name``


def _encrypt_flag(info: zipfile.ZipInfo) -> None:
    info.flag_bits |= 0x1


UNSAFE: dict[str, Unsafe] = {
    "dot-dot": Unsafe("../../etc/passwd", b"root", "unsafe_archive_member"),
    "absolute": Unsafe("/etc/passwd", b"root", "unsafe_archive_member"),
    "drive-letter": Unsafe("C:/Windows/x.png", b"x", "unsafe_archive_member"),
    "backslash-dot-dot": Unsafe("..\\..\\x.png", b"x", "unsafe_archive_member"),
    "symlink": Unsafe("link.png", (b"/etc/passwd", with_mode(stat.S_IFLNK | 0o777)), "unsafe_archive_member"),
    "char-device": Unsafe("tty.png", (b"", with_mode(stat.S_IFCHR | 0o666)), "unsafe_archive_member"),
    "block-device": Unsafe("sda.png", (b"", with_mode(stat.S_IFBLK | 0o666)), "unsafe_archive_member"),
    "fifo": Unsafe("pipe.png", (b"", with_mode(stat.S_IFIFO | 0o666)), "unsafe_archive_member"),
    "socket": Unsafe("sock.png", (b"", with_mode(stat.S_IFSOCK | 0o666)), "unsafe_archive_member"),
    "encrypted-flag": Unsafe("secret.png", (b"\x00" * 64, _encrypt_flag), "encrypted_archive_member"),
    "too-large-declared": Unsafe("huge.png", b"\x00" * 5000, "unsafe_archive_member"),
}


@pytest.mark.parametrize("case", list(UNSAFE), ids=list(UNSAFE))
def test_each_unsafe_member_is_refused_alone(tmp_path: Path, case: str) -> None:
    unsafe = UNSAFE[case]
    good = {"a/pairs.csv": b"ok.png,ok.png\n", "a/ok.png": b"\x89PNG fine"}
    path = write_zip(tmp_path / "ds.zip", {**good, unsafe.name: unsafe.content})
    read, refused = read_all(path, ArchiveLimits(max_member_bytes=4096))
    assert read == good
    assert refused == {unsafe.refused_as if unsafe.refused_as is not None else unsafe.name: unsafe.code}


def test_duplicate_names_are_refused_like_tar_duplicates(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "ds.zip", [("ok.png", b"1"), ("x.png", b"first"), ("./x.png", b"second")])
    with Dataset(path) as dataset:
        assert dataset.names == ("ok.png",)
        assert [e.code for e in dataset.rejected] == ["unsafe_archive_member"]
        assert dataset.rejected_names["x.png"].code == "unsafe_archive_member"
        with pytest.raises(FaceprintError) as refused:
            dataset.read("x.png")
    assert refused.value.code == "unsafe_archive_member"


def test_unreadable_compression_method_is_refused_alone(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "ds.zip", {"ok.png": b"1", "odd.png": b"2"})
    raw = bytearray(path.read_bytes())
    central = raw.index(b"PK\x01\x02", raw.index(b"PK\x01\x02") + 4)  # the second entry: odd.png
    struct.pack_into("<H", raw, central + 10, 9)  # Deflate64, which the stdlib cannot decompress
    path.write_bytes(bytes(raw))
    read, refused = read_all(path)
    assert read == {"ok.png": b"1"} and refused == {"odd.png": "unsafe_archive_member"}


def test_a_really_encrypted_member_is_refused(tmp_path: Path) -> None:
    # ZipCrypto-style entry: the encryption flag and a 12-byte encryption header before the (opaque) data.
    path = write_zip(tmp_path / "ds.zip", {"ok.png": b"1", "secret.png": (b"\x5a" * 12 + b"cipher", _encrypt_flag)})
    with Dataset(path) as dataset:
        assert dataset.names == ("ok.png",)
        (error,) = dataset.rejected
    assert isinstance(error, EncryptedMemberError) and error.details["name"] == "secret.png"


def test_max_members_is_respected(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "ds.zip", {f"{i}.png": b"x" for i in range(6)})
    with pytest.raises(FaceprintError) as too_many, Dataset(path, limits=ArchiveLimits(max_members=5)):
        pass
    assert too_many.value.code == "unsafe_archive_member"


def test_a_directory_declaring_too_many_entries_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "ds.zip", {"a.png": b"1", "b.png": b"2"})
    raw = bytearray(path.read_bytes())
    end = raw.rindex(b"PK\x05\x06")
    struct.pack_into("<HH", raw, end + 8, 60_000, 60_000)  # entries on this disk, entries in all
    path.write_bytes(bytes(raw))
    with pytest.raises(FaceprintError) as too_many, Dataset(path, limits=ArchiveLimits(max_members=100)):
        pass
    assert too_many.value.code == "unsafe_archive_member" and "declares 60000 entries" in too_many.value.message
    honest = write_zip(tmp_path / "honest.zip", {"a.png": b"1", "b.png": b"2"})
    with Dataset(honest, limits=ArchiveLimits(max_members=2)) as dataset:
        assert dataset.names == ("a.png", "b.png")


def test_total_declared_bytes_make_the_archive_unreadable(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "ds.zip", {f"{i}.png": b"\x00" * 1000 for i in range(5)})
    with pytest.raises(ArchiveError), Dataset(path, limits=ArchiveLimits(max_total_bytes=4000)):
        pass


# --- zip bombs ------------------------------------------------------------------------------------------------


def _set_declared_size(raw: bytearray, size: int) -> None:
    """Rewrite the uncompressed size of the (only) member in its local header and the central directory."""
    struct.pack_into("<I", raw, raw.index(b"PK\x03\x04") + 22, size)
    struct.pack_into("<I", raw, raw.index(b"PK\x01\x02") + 24, size)


def test_a_bomb_with_a_lying_header_is_refused_with_bounded_memory(tmp_path: Path) -> None:
    bomb_bytes = 64 * 1024 * 1024  # decompresses to 64 MiB from about 64 KiB
    path = write_zip(tmp_path / "bomb.zip", {"bomb.png": b"\x00" * bomb_bytes})
    raw = bytearray(path.read_bytes())
    assert len(raw) < bomb_bytes // 100
    _set_declared_size(raw, 1000)  # it claims 1000 bytes, well under the limit
    path.write_bytes(bytes(raw))
    tracemalloc.start()
    try:
        with Dataset(path, limits=ArchiveLimits(max_member_bytes=1024 * 1024)) as dataset:
            assert dataset.names == ("bomb.png",)  # the header passes the declared-size check ...
            ((name, result),) = list(dataset.iter_read(["bomb.png"]))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert name == "bomb.png" and isinstance(result, ArchiveError)  # ... reading stops at the declared size
    assert peak < 8 * 1024 * 1024, peak  # never near the 64 MiB the data would inflate to


def test_a_bomb_declaring_its_size_is_refused_before_reading(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "bomb.zip", {"ok.png": b"1", "bomb.png": b"\x00" * (8 * 1024 * 1024)})
    read, refused = read_all(path, ArchiveLimits(max_member_bytes=1024 * 1024))
    assert read == {"ok.png": b"1"} and refused == {"bomb.png": "unsafe_archive_member"}


def test_overlapping_members_make_the_archive_unreadable(tmp_path: Path) -> None:
    # The "overlapping files" bomb: many central-directory entries pointing at one compressed block.
    path = write_zip(tmp_path / "ds.zip", {"a.png": b"\x00" * 10_000, "b.png": b"\x00" * 10_000})
    raw = bytearray(path.read_bytes())
    first = raw.index(b"PK\x01\x02")
    second = raw.index(b"PK\x01\x02", first + 4)
    struct.pack_into("<I", raw, second + 42, struct.unpack_from("<I", raw, first + 42)[0])
    path.write_bytes(bytes(raw))
    with pytest.raises(ArchiveError, match="share stored bytes"), Dataset(path):
        pass


# --- corrupt archives -----------------------------------------------------------------------------------------

CORRUPT: dict[str, Callable[[bytes], bytes]] = {
    "truncated-before-central-directory": lambda raw: raw[: raw.index(b"PK\x01\x02")],
    "truncated-end-record": lambda raw: raw[:-10],
    "bad-central-directory": lambda raw: raw.replace(b"PK\x01\x02", b"PK\x09\x09", 1),
    "only-a-local-header": lambda raw: raw[:30],
}


@pytest.mark.parametrize("case", list(CORRUPT), ids=list(CORRUPT))
def test_a_corrupt_zip_is_an_archive_error(tmp_path: Path, case: str) -> None:
    path = write_zip(tmp_path / "ds.zip", {"pairs.csv": b"a.png,b.png\n", "a.png": b"1" * 100})
    path.write_bytes(CORRUPT[case](path.read_bytes()))
    assert detect_kind(path) == "zip"
    with pytest.raises(ArchiveError) as refused, Dataset(path):
        pass
    assert refused.value.code == "archive_error"


def test_a_crc_error_refuses_that_member_alone(tmp_path: Path) -> None:
    path = tmp_path / "ds.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("ok.png", b"fine")
        archive.writestr("bad.png", b"ABCDEFGHIJ")
    raw = path.read_bytes()
    path.write_bytes(raw.replace(b"ABCDEFGHIJ", b"ABCDEFGHIX"))  # stored data changed, CRC-32 left as it was
    assert zlib.crc32(b"ABCDEFGHIX") != zlib.crc32(b"ABCDEFGHIJ")
    read, refused = read_all(path)
    assert read == {"ok.png": b"fine", "bad.png": "archive_error"} and refused == {}


def test_a_damaged_member_in_a_pairs_job_fails_only_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "ds.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("pairs.csv", "red.png,red2.png\nred.png,blue.png\n")
        archive.writestr("red.png", make_face_png(RED))
        archive.writestr("red2.png", make_face_png(RED, size_wh=(40, 30)))
        blue = make_face_png(BLUE)
        archive.writestr("blue.png", blue)
    raw = path.read_bytes()
    at = raw.index(blue) + len(blue) // 2
    path.write_bytes(raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1 :])
    out = tmp_path / "out.tar.gz"
    result = run_pairs_job([path], out, options=QUIET_1, pipeline_factory=fake_pipeline_factory)
    assert [(d.rows, d.scored, d.failed) for d in result.datasets] == [(2, 1, 1)]
    with tarfile.open(out) as tar:
        (errors_info,) = [info for info in tar.getmembers() if info.name.endswith("/processing.error")]
        extracted = tar.extractfile(errors_info)
        assert extracted is not None
        errors = extracted.read().decode()
    assert "blue.png,archive_error," in errors and "red2.png" not in errors
