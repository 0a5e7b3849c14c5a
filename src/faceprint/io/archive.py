"""Safe dataset reading (folder, TAR, TAR.GZ, ZIP) and deterministic, atomic TAR.GZ writing.

A :class:`Dataset` is a read-only view of the files of one dataset. Nothing is ever extracted: members are
read straight out of the archive into memory, one at a time, so a hostile name (``../../etc/passwd``), a
symlink or a device node can never be written anywhere. Members that are unsafe are left out of the listing
and reported as :class:`~faceprint.errors.UnsafeArchiveMemberError` in :attr:`Dataset.rejected`:

- absolute names (``/x``, ``\\x``, ``C:x``) and names with a ``..`` component;
- symbolic links, hard links, character and block devices, FIFOs, sparse files, other special members;
- names that occur twice (after normalising ``./a`` to ``a``): which copy is meant cannot be known;
- members larger than :attr:`ArchiveLimits.max_member_bytes`.

Too many members (:attr:`ArchiveLimits.max_members`) or too many bytes in all
(:attr:`ArchiveLimits.max_total_bytes`) make the whole dataset unreadable (the open raises), and so does a
``.tar.gz`` whose gzip trailer (CRC-32 and length) does not match: its bytes are corrupt somewhere, and no
member can be trusted. The trailer is checked at the end of the opening scan (tarfile itself stops at the
end-of-archive blocks and never reads it).

A dataset path that is a FIFO, device or socket is refused after a ``stat``, never opened (opening a FIFO
blocks until a writer comes). A sub-folder of a folder dataset that cannot be listed is refused alone, as
:class:`~faceprint.errors.UnreadableMemberError`; the rest of the dataset is read.

Folders are walked without following symlinks out of the root: a symlink to a regular file inside the root
is read as that file; one that points outside, dangles, or points to a folder is rejected (folders reached
through symlinks are not walked, so a link loop cannot hang the scan).

ZIP datasets get the same guarantees (read with the stdlib :mod:`zipfile`, never extracted): every name goes
through :func:`normalize_member_name`; members whose Unix mode (``external_attr >> 16``) is a symlink, device,
FIFO or socket are refused, and so are encrypted members (:class:`EncryptedMemberError`) and members stored
with a compression method the stdlib cannot read; folders are skipped; a repeated name is refused like a
repeated TAR name. Zip bombs: the declared ``file_size`` is checked against the limits when the archive is
opened, and while a member is read its decompressed bytes are counted in 1 MiB chunks and reading stops past
the declared size (``zipfile`` itself stops there, and a member that lies about its size then fails its
CRC-32). Members whose stored data overlap (the "overlapping files" zip bomb, where thousands of entries
reuse one compressed block) make the whole archive unreadable, and a central directory whose end record
declares more than ``max_members`` entries is refused before ``zipfile`` parses it (it builds one object per
entry). A compression-ratio guard is not used: with
the declared size bounded and enforced, a ratio adds no bound, and honest photos of blank frames compress
well. A damaged central directory (or a truncated file) makes the whole archive unreadable; a member that
fails its CRC-32 is refused alone (:class:`~faceprint.errors.ArchiveError` for that member), as a truncated
TAR member is. ``__MACOSX/`` resource forks are listed like any file, as in folders and TARs (the pairs job
ignores them when it looks for ``pairs.csv``).

Reading strategy for TAR.GZ (why this is memory-bounded): gzip is a stream, so seeking backwards means
decompressing again from the start. Opening scans the headers once (one sequential decompression pass,
keeping only the ``TarInfo`` headers, bounded by ``max_members``), and small files the caller asks for up
front (``preload``, e.g. ``pairs.csv``) are read during that same pass. :meth:`Dataset.iter_read` then
returns the members asked for *in archive order*, so the stream is read forward once more; memory holds
one member at a time. The cost is decompressing the archive twice, which is cheap next to face detection.

Example:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (root / "a.txt").write_bytes(b"hello")
    >>> with Dataset(root) as dataset:
    ...     [(m.name, m.size) for m in dataset.members], dataset.read("a.txt")
    ([('a.txt', 5)], b'hello')
    >>> out = write_deterministic_targz({"run/out.csv": b"x\\n"}, root / "out.tar.gz")
    >>> with Dataset(out) as packed:
    ...     packed.kind, [m.name for m in packed.members]
    ('tar.gz', ['run/out.csv'])
"""

from __future__ import annotations

import contextlib
import gzip
import io
import itertools
import os
import posixpath
import re
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, Literal

from faceprint.errors import (
    ArchiveError,
    FaceprintError,
    InvalidSettingError,
    MissingFileError,
    NotRegularFileError,
    UnreadableMemberError,
    UnsafeArchiveMemberError,
)
from faceprint.io.atomic import open_atomic

if TYPE_CHECKING:
    from faceprint.crypto import RecordCipher, SealedWriter

DatasetKind = Literal["directory", "tar", "tar.gz", "zip"]

_GZIP_MAGIC = b"\x1f\x8b"
_TAR_BLOCK = 512
_DRIVE_RE = re.compile(r"^[A-Za-z]:")
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; the end record of an empty archive
_ZIP_LOCAL_HEADER_BYTES = 30
_ZIP_READ_CHUNK = 1 << 20
_ZIP_END_RECORD_BYTES = 22
_ZIP_END_SEARCH_BYTES = _ZIP_END_RECORD_BYTES + 0xFFFF  # the end record, then at most a 64 KiB comment
_ZIP_MAX_DIRECTORY_ENTRY_BYTES = 46 + 4096 + 1024  # fixed part, a long name, generous extra fields
_ZIP_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA})


class EncryptedMemberError(UnsafeArchiveMemberError):
    """A ZIP member is encrypted: without its password it cannot be read (none is ever asked for)."""

    code = "encrypted_archive_member"


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    """Bounds on what a dataset may hold; beyond them a member (or the dataset) is refused.

    Example:
        >>> ArchiveLimits(max_members=10).max_members
        10
    """

    max_member_bytes: int = 64 * 1024 * 1024
    """Largest single file; bigger members are rejected (an image this large is not a face photo)."""
    max_members: int = 100_000
    """Most entries (files, folders, links) one dataset may list; more makes the dataset unreadable."""
    max_total_bytes: int = 32 * 1024**3
    """Most bytes all accepted files may add up to (uncompressed)."""

    def __post_init__(self) -> None:
        for name in ("max_member_bytes", "max_members", "max_total_bytes"):
            if getattr(self, name) <= 0:
                raise InvalidSettingError(f"{name} must be positive, got {getattr(self, name)}")


@dataclass(frozen=True, slots=True)
class Member:
    """One regular file of a dataset: its relative POSIX name and size in bytes."""

    name: str
    size: int


def detect_kind(path: Path) -> DatasetKind:
    """Say whether ``path`` is a folder, a TAR, a gzip-compressed TAR or a ZIP, by content, not by name.

    Raises:
        MissingFileError: ``path`` does not exist.
        NotRegularFileError: a FIFO, device or socket (checked with ``stat``; never opened, so no hang).
        ArchiveError: it is a file but neither a TAR, a gzip stream nor a ZIP.

    Example:
        >>> import tempfile, pathlib
        >>> detect_kind(pathlib.Path(tempfile.mkdtemp()))
        'directory'
    """
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError) as err:
        raise MissingFileError(f"{path.name}: no such file or folder", details={"name": path.name}) from err
    except OSError as err:
        raise ArchiveError(f"{path.name}: cannot read: {err.strerror}", details={"name": path.name}) from err
    if stat.S_ISDIR(mode):
        return "directory"
    if not stat.S_ISREG(mode):
        raise NotRegularFileError(
            f"{path.name}: a FIFO, device or socket, not a dataset (a folder, .tar, .tar.gz, .tgz or .zip)",
            details={"name": path.name},
        )
    try:
        # O_NONBLOCK: should the path have been swapped for a FIFO since the stat, open must not block.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise NotRegularFileError(f"{path.name}: no longer a regular file", details={"name": path.name})
            head = handle.read(_TAR_BLOCK)
    except FileNotFoundError as err:
        raise MissingFileError(f"{path.name}: no such file or folder", details={"name": path.name}) from err
    except OSError as err:
        raise ArchiveError(f"{path.name}: cannot read: {err.strerror}", details={"name": path.name}) from err
    return _kind_of_head(head, path.name)


def _kind_of_head(head: bytes, name: str) -> DatasetKind:
    if head.startswith(_GZIP_MAGIC):
        return "tar.gz"
    if head.startswith(_ZIP_MAGICS):
        return "zip"
    if len(head) == _TAR_BLOCK and (head[257:262] == b"ustar" or _has_valid_tar_checksum(head)):
        # Old (v7) TARs carry no "ustar" magic; a correct header checksum is the only signature they have.
        return "tar"
    hint = "an empty file" if not head else "not a folder, .tar, .tar.gz, .tgz or .zip"
    raise ArchiveError(f"{name}: {hint}", details={"name": name})


@dataclass(frozen=True, slots=True)
class DatasetSource:
    """A dataset archive held elsewhere (a job's upload, maybe sealed at rest), read through ``open``.

    ``name`` is what messages and outputs call it; ``open`` returns a fresh seekable binary file, which
    the dataset closes. Nothing is copied or extracted.

    Example:
        >>> import io
        >>> DatasetSource("faces.tar", lambda: io.BytesIO(b"")).name
        'faces.tar'
    """

    name: str
    open: Callable[[], BinaryIO]


def _has_valid_tar_checksum(header: bytes) -> bool:
    field = header[148:156].split(b"\0", 1)[0].strip()
    if not field or not all(48 <= c <= 55 for c in field):  # octal digits only
        return False
    unsigned = sum(header[:148]) + 8 * 32 + sum(header[156:])
    return int(field, 8) == unsigned


def normalize_member_name(raw: str) -> str:
    """The normalised relative POSIX name of an archive member, or raise if it could escape the root.

    ``./a//b.jpg`` becomes ``a/b.jpg``. Backslashes count as separators for the ``..`` check (a Windows
    tool would treat them so) but are kept in the name.

    Raises:
        UnsafeArchiveMemberError: absolute, drive-lettered, ``..``-containing, empty or NUL-containing.

    Example:
        >>> normalize_member_name("./photos//a.jpg")
        'photos/a.jpg'
    """
    details = {"name": raw}
    if not raw or "\0" in raw:
        raise UnsafeArchiveMemberError(f"{raw!r}: empty or NUL-containing member name", details=details)
    if raw.startswith(("/", "\\")) or _DRIVE_RE.match(raw):
        raise UnsafeArchiveMemberError(f"{raw}: absolute member path", details=details)
    if any(part == ".." for part in re.split(r"[/\\]", raw)):
        raise UnsafeArchiveMemberError(f"{raw}: member path contains '..'", details=details)
    parts = [part for part in raw.split("/") if part not in ("", ".")]
    return "/".join(parts)


def _zip_type_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a ZIP entry cannot be a dataset file (by the Unix mode some tools store), or None."""
    mode = info.external_attr >> 16
    if stat.S_IFMT(mode) == 0 or stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None  # no Unix mode recorded (DOS/Windows tools), a regular file or a folder
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device node"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    return f"unsupported member type (mode {mode:o})"


def _tar_type_problem(info: tarfile.TarInfo) -> str | None:
    """Why a TAR entry cannot be a dataset file, or None for regular files and folders."""
    if info.issym():
        return f"symbolic link (to {info.linkname!r})"
    if info.islnk():
        return f"hard link (to {info.linkname!r})"
    if info.ischr() or info.isblk():
        return "device node"
    if info.isfifo():
        return "FIFO"
    if info.issparse():
        return "sparse file"
    if info.isreg() or info.isdir():
        return None
    return f"unsupported member type {info.type!r}"


class Dataset:
    """The files of one dataset (folder, ``.tar``, ``.tar.gz``/``.tgz``, ``.zip``), read safely and on demand.

    Use it in a ``with`` block: the archive is opened and its listing checked on entry, closed on exit
    (also when the caller stops early).

    Args:
        path: A folder or an archive file; the kind is detected from the content.
        limits: Size and count bounds (see :class:`ArchiveLimits`).
        preload: Members whose name satisfies it are read during the opening scan (meant for small files
            such as ``pairs.csv``, so a ``.tar.gz`` is not rewound to fetch them).

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (root / "pairs.csv").write_bytes(b"a.jpg,b.jpg\\n")
        >>> with Dataset(root, preload=lambda name: name.endswith(".csv")) as dataset:
        ...     dataset.read("pairs.csv")
        b'a.jpg,b.jpg\\n'
    """

    def __init__(
        self,
        path: Path | DatasetSource,
        *,
        limits: ArchiveLimits | None = None,
        preload: Callable[[str], bool] | None = None,
    ) -> None:
        self._opener = path.open if isinstance(path, DatasetSource) else None
        self.path = Path(path.name) if isinstance(path, DatasetSource) else Path(path)
        self.limits = limits if limits is not None else ArchiveLimits()
        self._preload = preload
        self.kind: DatasetKind | None = None
        self._members: dict[str, Member] = {}
        self._rejected: dict[str, UnsafeArchiveMemberError] = {}
        self._rejected_list: list[UnsafeArchiveMemberError] = []
        self._preloaded: dict[str, bytes] = {}
        self._tar: tarfile.TarFile | None = None
        self._raw: BinaryIO | None = None
        self._tar_infos: dict[str, tarfile.TarInfo] = {}
        self._zip: zipfile.ZipFile | None = None
        self._zip_infos: dict[str, zipfile.ZipInfo] = {}
        self._dir_targets: dict[str, str] = {}
        self._root_real = ""

    # --- context management --------------------------------------------------------------------------

    def __enter__(self) -> Dataset:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        """Detect the kind, list and check every member. Prefer the ``with`` block.

        Raises:
            MissingFileError: the path does not exist.
            ArchiveError: not a readable folder/TAR/TAR.GZ/ZIP, or more bytes than ``max_total_bytes``.
            UnsafeArchiveMemberError: more entries than ``max_members``.
        """
        self.kind = detect_kind(self.path) if self._opener is None else self._kind_of_source()
        try:
            if self.kind == "directory":
                self._scan_directory()
            elif self.kind == "zip":
                self._open_zip()
            else:
                self._open_tar()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the archive handle; safe to call twice."""
        if self._tar is not None:
            self._tar.close()
            self._tar = None
        if self._zip is not None:
            self._zip.close()
            self._zip = None
        if self._raw is not None:
            self._raw.close()
            self._raw = None

    # --- listing -------------------------------------------------------------------------------------

    @property
    def members(self) -> tuple[Member, ...]:
        """Accepted regular files, in storage order (archive order; sorted names for folders)."""
        return tuple(self._members.values())

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._members)

    @property
    def rejected(self) -> tuple[UnsafeArchiveMemberError, ...]:
        """One error per refused entry, in the order met; ``details["name"]`` holds the entry's name."""
        return tuple(self._rejected_list)

    @property
    def rejected_names(self) -> Mapping[str, UnsafeArchiveMemberError]:
        """Refused entries by normalised name (only those whose name itself is safe)."""
        return dict(self._rejected)

    def __contains__(self, name: object) -> bool:
        return name in self._members

    def _reject(self, name: str | None, error: UnsafeArchiveMemberError) -> None:
        self._rejected_list.append(error)
        if name is not None:
            self._rejected.setdefault(name, error)

    def _count_entry(self, count: int) -> None:
        if count > self.limits.max_members:
            raise UnsafeArchiveMemberError(
                f"{self.path.name}: more than {self.limits.max_members} entries",
                details={"name": self.path.name, "max_members": self.limits.max_members},
            )

    def _add_member(self, name: str, size: int, total: int) -> int:
        """Accept a regular file unless its name repeats or it is too large; return the new byte total."""
        if name in self._rejected:
            return total
        if name in self._members:
            previous = self._members.pop(name)
            self._preloaded.pop(name, None)
            self._tar_infos.pop(name, None)
            self._zip_infos.pop(name, None)
            self._dir_targets.pop(name, None)
            self._reject(
                name,
                UnsafeArchiveMemberError(
                    f"{name}: the name occurs more than once in the archive", details={"name": name}
                ),
            )
            return total - previous.size
        if size > self.limits.max_member_bytes:
            self._reject(
                name,
                UnsafeArchiveMemberError(
                    f"{name}: {size} bytes is above the limit of {self.limits.max_member_bytes}",
                    details={"name": name, "size": size, "max_member_bytes": self.limits.max_member_bytes},
                ),
            )
            return total
        total += size
        if total > self.limits.max_total_bytes:
            raise ArchiveError(
                f"{self.path.name}: more than {self.limits.max_total_bytes} bytes of files",
                details={"name": self.path.name, "max_total_bytes": self.limits.max_total_bytes},
            )
        self._members[name] = Member(name=name, size=size)
        return total

    def _open_raw(self) -> BinaryIO:
        return self.path.open("rb") if self._opener is None else self._opener()

    def _kind_of_source(self) -> DatasetKind:
        name = self.path.name
        try:
            with self._open_raw() as handle:
                head = handle.read(_TAR_BLOCK)
        except OSError as err:
            raise ArchiveError(f"{name}: cannot read: {err}", details={"name": name}) from err
        return _kind_of_head(head, name)

    # --- TAR ------------------------------------------------------------------------------------------

    def _open_tar(self) -> None:
        mode: Literal["r:gz", "r:"] = "r:gz" if self.kind == "tar.gz" else "r:"
        archive_name = self.path.name
        try:
            self._raw = self._open_raw()
            self._tar = tarfile.open(fileobj=self._raw, mode=mode)
            count = 0
            total = 0
            while (info := self._tar.next()) is not None:
                count += 1
                self._count_entry(count)
                total = self._check_tar_entry(info, total)
            if self.kind == "tar.gz":
                self._check_gzip_trailer()
        except FaceprintError:
            raise
        except gzip.BadGzipFile as err:
            raise ArchiveError(
                f"{archive_name}: corrupt gzip stream ({err}); the archive was damaged, no file in it can be trusted",
                details={"name": archive_name},
            ) from err
        except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
            raise ArchiveError(
                f"{archive_name}: not a readable {self.kind} archive: {err}", details={"name": archive_name}
            ) from err

    def _check_gzip_trailer(self) -> None:
        """Read the gzip stream to its end, where GzipFile checks the CRC-32 and length of all the data."""
        zipped = self._tar.fileobj if self._tar is not None else None
        if zipped is None:
            return
        # Only the end-of-archive padding is left after the header scan: a few KB, read in bounded chunks.
        while zipped.read(1 << 20):
            pass

    def _check_tar_entry(self, info: tarfile.TarInfo, total: int) -> int:
        try:
            name = normalize_member_name(info.name)
        except UnsafeArchiveMemberError as err:
            self._reject(None, err)
            return total
        problem = _tar_type_problem(info)
        if problem is not None:
            self._reject(
                name or info.name,
                UnsafeArchiveMemberError(f"{info.name}: {problem}", details={"name": info.name}),
            )
            return total
        if info.isdir():
            return total
        if not name:
            self._reject(None, UnsafeArchiveMemberError(f"{info.name!r}: a file with no name", details={}))
            return total
        total = self._add_member(name, info.size, total)
        if name in self._members:
            self._tar_infos[name] = info
            if self._preload is not None and self._preload(name):
                # Read now, while the stream is positioned at this member: no rewind of a .tar.gz later.
                self._preloaded[name] = self._read_tar_member(name, info)
        return total

    def _read_tar_member(self, name: str, info: tarfile.TarInfo) -> bytes:
        if self._tar is None:
            raise ArchiveError(f"{name}: the dataset is closed", details={"name": name})
        try:
            handle = self._tar.extractfile(info)
            if handle is None:
                raise ArchiveError(f"{name}: not a regular file", details={"name": name})
            with handle:
                data = handle.read(info.size + 1)
        except FaceprintError:
            raise
        except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
            raise ArchiveError(f"{name}: cannot read from the archive: {err}", details={"name": name}) from err
        if len(data) != info.size:
            raise ArchiveError(
                f"{name}: archive member is truncated ({len(data)} of {info.size} bytes)", details={"name": name}
            )
        return data

    # --- ZIP ------------------------------------------------------------------------------------------

    def _open_zip(self) -> None:
        archive_name = self.path.name
        try:
            self._raw = self._open_raw()
            self._check_zip_directory_size(self._raw)
            # The central directory is parsed here; a damaged or truncated one makes the archive unreadable.
            self._zip = zipfile.ZipFile(self._raw)
            infos = self._zip.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, NotImplementedError) as err:
            raise ArchiveError(
                f"{archive_name}: not a readable zip archive: {err}", details={"name": archive_name}
            ) from err
        self._count_entry(len(infos))
        self._check_zip_overlaps(infos)
        total = 0
        for info in infos:
            total = self._check_zip_entry(info, total)

    def _check_zip_directory_size(self, handle: BinaryIO) -> None:
        """Refuse a central directory that declares too many entries before ``zipfile`` parses all of it.

        ``zipfile`` reads the whole directory and builds one ``ZipInfo`` per entry, so a hostile count would
        cost memory before :attr:`ArchiveLimits.max_members` could be checked. A missing or odd end record
        is left to ``zipfile`` (it raises ``BadZipFile``).
        """
        size = handle.seek(0, os.SEEK_END)
        start = max(0, size - _ZIP_END_SEARCH_BYTES)
        handle.seek(start)
        tail = handle.read(size - start)
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < _ZIP_END_RECORD_BYTES:
            return
        entries, directory_bytes = struct.unpack_from("<HI", tail, at + 10)
        entries_bound = self.limits.max_members
        if entries != 0xFFFF and directory_bytes != 0xFFFFFFFF:
            too_many = entries > entries_bound or directory_bytes > entries_bound * _ZIP_MAX_DIRECTORY_ENTRY_BYTES
        else:  # ZIP64: the real counts are in the ZIP64 end record, which zipfile checks as it parses
            too_many = False
        if too_many:
            raise UnsafeArchiveMemberError(
                f"{self.path.name}: the ZIP directory declares {entries} entries in {directory_bytes} bytes, "
                f"more than {entries_bound} entries",
                details={"name": self.path.name, "max_members": entries_bound},
            )
        handle.seek(0)

    def _check_zip_overlaps(self, infos: list[zipfile.ZipInfo]) -> None:
        """Refuse the archive if two members' stored data overlap (one compressed block counted many times)."""
        archive_name = self.path.name
        ordered = sorted(infos, key=lambda info: info.header_offset)
        for current, following in itertools.pairwise(ordered):
            # A lower bound of where the member ends: its local header (without name and extra) and data.
            end = current.header_offset + _ZIP_LOCAL_HEADER_BYTES + current.compress_size
            if following.header_offset < end:
                raise ArchiveError(
                    f"{archive_name}: members {current.filename!r} and {following.filename!r} share stored bytes "
                    "(an overlapping-entries zip bomb, or a damaged central directory)",
                    details={"name": archive_name},
                )

    def _check_zip_entry(self, info: zipfile.ZipInfo, total: int) -> int:
        try:
            name = normalize_member_name(info.filename)
        except UnsafeArchiveMemberError as err:
            self._reject(None, err)
            return total
        problem = _zip_type_problem(info)
        if problem is not None:
            self._reject(
                name or info.filename,
                UnsafeArchiveMemberError(f"{info.filename}: {problem}", details={"name": info.filename}),
            )
            return total
        if info.is_dir():
            return total
        if not name:
            self._reject(None, UnsafeArchiveMemberError(f"{info.filename!r}: a file with no name", details={}))
            return total
        if info.flag_bits & 0x1:
            self._reject(
                name,
                EncryptedMemberError(
                    f"{info.filename}: encrypted (no password is asked for)", details={"name": info.filename}
                ),
            )
            return total
        if info.compress_type not in _ZIP_METHODS:
            self._reject(
                name,
                UnsafeArchiveMemberError(
                    f"{info.filename}: compression method {info.compress_type} cannot be read",
                    details={"name": info.filename, "compress_type": info.compress_type},
                ),
            )
            return total
        total = self._add_member(name, info.file_size, total)
        if name in self._members:
            self._zip_infos[name] = info
            if self._preload is not None and self._preload(name):
                self._preloaded[name] = self._read_zip_member(name, info)
        return total

    def _read_zip_member(self, name: str, info: zipfile.ZipInfo) -> bytes:
        if self._zip is None:
            raise ArchiveError(f"{name}: the dataset is closed", details={"name": name})
        # Never trust the header alone: count what decompression actually yields and stop past the bound.
        bound = min(info.file_size, self.limits.max_member_bytes)
        chunks: list[bytes] = []
        count = 0
        try:
            with self._zip.open(info) as handle:
                while chunk := handle.read(_ZIP_READ_CHUNK):
                    count += len(chunk)
                    if count > bound:
                        raise UnsafeArchiveMemberError(
                            f"{name}: decompresses to more than its declared {info.file_size} bytes",
                            details={"name": name, "size": info.file_size},
                        )
                    chunks.append(chunk)
        except FaceprintError:
            raise
        except zipfile.BadZipFile as err:  # a CRC-32 mismatch once fully read, or a bad local header
            raise ArchiveError(f"{name}: corrupt archive member: {err}", details={"name": name}) from err
        except (EOFError, OSError, zlib.error, ValueError, RuntimeError, NotImplementedError) as err:
            raise ArchiveError(f"{name}: cannot read from the archive: {err}", details={"name": name}) from err
        if count != info.file_size:
            raise ArchiveError(
                f"{name}: archive member is truncated ({count} of {info.file_size} bytes)", details={"name": name}
            )
        return b"".join(chunks)

    # --- folders --------------------------------------------------------------------------------------

    def _scan_directory(self) -> None:
        self._root_real = os.path.realpath(self.path)
        count = 0
        total = 0
        # Iterative walk (no recursion limit on deep trees); members are sorted by full name afterwards.
        stack: list[tuple[str, str]] = [(self._root_real, "")]
        while stack:
            folder, prefix = stack.pop()
            try:
                with os.scandir(folder) as entries:
                    listing = sorted(entries, key=lambda e: e.name)
            except OSError as err:
                if not prefix:  # the dataset's own folder: nothing of it can be read
                    raise ArchiveError(
                        f"{self.path.name}: cannot list folder: {err.strerror}", details={"name": self.path.name}
                    ) from err
                # One unreadable sub-folder is refused alone; the rest of the dataset is still read.
                name = prefix.rstrip("/")
                self._reject(
                    name,
                    UnreadableMemberError(
                        f"{name}/: cannot list folder: {err.strerror}", details={"name": name, "folder": True}
                    ),
                )
                continue
            subfolders: list[tuple[str, str]] = []
            for entry in listing:
                count += 1
                self._count_entry(count)
                name = f"{prefix}{entry.name}"
                if entry.is_symlink():
                    total = self._check_symlink(entry, name, total)
                elif entry.is_dir(follow_symlinks=False):
                    subfolders.append((entry.path, f"{name}/"))
                elif entry.is_file(follow_symlinks=False):
                    size = entry.stat(follow_symlinks=False).st_size
                    total = self._add_member(name, size, total)
                    if name in self._members:
                        self._dir_targets[name] = entry.path
                else:
                    self._reject(
                        name,
                        UnsafeArchiveMemberError(
                            f"{name}: not a regular file (device, FIFO or socket)", details={"name": name}
                        ),
                    )
            stack.extend(reversed(subfolders))
        self._members = dict(sorted(self._members.items()))
        self._preload_directory()

    def _check_symlink(self, entry: os.DirEntry[str], name: str, total: int) -> int:
        target = os.path.realpath(entry.path)
        problem: str | None = None
        if os.path.commonpath([self._root_real, target]) != self._root_real:
            problem = "symbolic link pointing outside the dataset"
        elif os.path.isdir(target):
            problem = "symbolic link to a folder (not followed)"
        elif not os.path.isfile(target):
            problem = "symbolic link to nothing or to a special file"
        if problem is not None:
            self._reject(name, UnsafeArchiveMemberError(f"{name}: {problem}", details={"name": name}))
            return total
        total = self._add_member(name, os.stat(target).st_size, total)
        if name in self._members:
            self._dir_targets[name] = target
        return total

    def _preload_directory(self) -> None:
        if self._preload is None:
            return
        for name in self._members:
            if self._preload(name):
                self._preloaded[name] = self._read_directory_member(name)

    def _read_directory_member(self, name: str) -> bytes:
        path = self._dir_targets[name]
        # Re-check at read time: the folder may have changed since the scan (a file swapped for a link).
        if os.path.commonpath([self._root_real, os.path.realpath(path)]) != self._root_real:
            raise UnsafeArchiveMemberError(f"{name}: now points outside the dataset", details={"name": name})
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(path, flags)
        except FileNotFoundError as err:
            raise MissingFileError(f"{name}: the file disappeared", details={"name": name}) from err
        except OSError as err:
            raise ArchiveError(f"{name}: cannot open: {err.strerror}", details={"name": name}) from err
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise UnsafeArchiveMemberError(f"{name}: no longer a regular file", details={"name": name})
            data = handle.read(self.limits.max_member_bytes + 1)
        if len(data) > self.limits.max_member_bytes:
            raise UnsafeArchiveMemberError(
                f"{name}: grew above the limit of {self.limits.max_member_bytes} bytes", details={"name": name}
            )
        return data

    # --- reading --------------------------------------------------------------------------------------

    def read(self, name: str) -> bytes:
        """The bytes of one member (random access; on a ``.tar.gz`` prefer :meth:`iter_read`).

        Raises:
            UnsafeArchiveMemberError: ``name`` was refused when the dataset was opened.
            MissingFileError: no such member.
            ArchiveError: the member cannot be read.
        """
        if name in self._preloaded:
            return self._preloaded[name]
        if name in self._rejected:
            raise self._rejected[name]
        if name not in self._members:
            raise MissingFileError(f"{name}: no such file in the dataset", details={"name": name})
        if self.kind == "directory":
            return self._read_directory_member(name)
        if self.kind == "zip":
            return self._read_zip_member(name, self._zip_infos[name])
        return self._read_tar_member(name, self._tar_infos[name])

    def iter_read(self, names: Iterable[str]) -> Iterator[tuple[str, bytes | FaceprintError]]:
        """Yield ``(name, bytes)`` for each wanted member in storage order, or ``(name, error)`` if unreadable.

        Storage order lets a ``.tar.gz`` be decompressed forward once; one member is in memory at a time
        (the caller should drop each before asking for the next).
        """
        wanted = set(names)
        for name in [n for n in self._members if n in wanted]:
            try:
                yield name, self.read(name)
            except (MissingFileError, ArchiveError, UnsafeArchiveMemberError) as err:
                yield name, err
        for name in sorted(wanted - self._members.keys()):
            yield (
                name,
                self._rejected.get(name)
                or MissingFileError(f"{name}: no such file in the dataset", details={"name": name}),
            )


# --- writing -----------------------------------------------------------------------------------------


def _check_output_name(name: str) -> str:
    normalized = normalize_member_name(name)
    if normalized != name or name.endswith("/"):
        raise ValueError(f"archive member names must be normalised relative POSIX paths, got {name!r}")
    return name


def write_deterministic_targz(
    files: Mapping[str, bytes] | Iterable[tuple[str, bytes]],
    out_path: Path,
    *,
    compresslevel: int = 9,
    cipher: RecordCipher | None = None,
    context: str = "",
) -> Path:
    """Write ``files`` (name -> bytes) as a TAR.GZ whose bytes depend only on the names and contents.

    Members are sorted by name, parent folders are added as entries, and every varying field is fixed:
    mtime 0, uid/gid 0, no user/group names, mode 0644 (files) / 0755 (folders), PAX format, gzip header
    mtime 0 and no file name. The archive is written to a temp file beside ``out_path`` and moved into
    place with ``os.replace``.

    Args:
        files: Member names (relative POSIX paths) and contents.
        out_path: The archive to write; its folder must exist.
        compresslevel: gzip level 1-9.
        cipher: Seal the archive at rest (a stream bound to ``context``, read with
            :func:`faceprint.crypto.open_sealed`); the clear archive is never written.
        context: The sealed stream's place (e.g. ``"jobs/<id>/result"``).

    Returns:
        ``out_path``.

    Raises:
        ValueError: a name is absolute, not normalised, contains ``..`` or occurs twice.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> a = write_deterministic_targz({"d/x.txt": b"1"}, folder / "a.tar.gz").read_bytes()
        >>> b = write_deterministic_targz([("d/x.txt", b"1")], folder / "b.tar.gz").read_bytes()
        >>> a == b
        True
    """
    items = list(files.items()) if isinstance(files, Mapping) else list(files)
    contents: dict[str, bytes] = {}
    for name, data in items:
        try:
            _check_output_name(name)
        except UnsafeArchiveMemberError as err:
            raise ValueError(f"unsafe archive member name {name!r}: {err.message}") from err
        if name in contents:
            raise ValueError(f"archive member {name!r} given twice")
        contents[name] = bytes(data)
    folders = {posixpath.dirname(name) for name in contents}
    for folder in list(folders):
        while folder:
            folders.add(folder)
            folder = posixpath.dirname(folder)
    folders.discard("")
    clash = folders & contents.keys()
    if clash:
        raise ValueError(f"names used both as file and folder: {sorted(clash)}")

    entries = sorted([(name, None) for name in folders] + list(contents.items()), key=lambda item: item[0])
    with open_atomic(Path(out_path)) as handle, contextlib.ExitStack() as sealing:
        raw: BinaryIO | SealedWriter = handle
        if cipher is not None:
            from faceprint.crypto import SealedWriter as Sealer

            raw = sealing.enter_context(Sealer(handle, cipher, context=context))
        with (
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=compresslevel, mtime=0) as zipped,
            tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for name, data in entries:
                info = tarfile.TarInfo(name)
                info.mtime = 0
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if data is None:
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)
                else:
                    info.mode = 0o644
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return Path(out_path)
