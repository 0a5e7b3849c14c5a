"""Image inputs of the one-shot commands: files, folders (recursive) and TAR/TGZ archives, as engine items.

``faceprint detect``, ``embed``, ``identify`` and ``gallery enroll`` take any mix of image files,
folders and archives, like ``faceprint pairs``. Folders and archives are read through
:class:`faceprint.io.archive.Dataset` (symbolic links, devices and unsafe names are refused one by one),
keeping only image names; an archive member is named ``ARCHIVE/MEMBER``. Nothing is extracted: bytes are
read when the engine asks for them.

Example:
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> _ = (root / "a.jpg").write_bytes(b"x"); _ = (root / "notes.txt").write_bytes(b"y")
    >>> [item.key.replace(str(root), "ROOT") for item in iter_image_items([root])]
    ['ROOT/a.jpg']
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from faceprint.analyze import AnalyzeItem
from faceprint.batch.pairs_csv import looks_like_image_name
from faceprint.errors import ArchiveError, FaceprintError, InputError
from faceprint.io.archive import ArchiveLimits, Dataset, detect_kind

__all__ = ["count_image_items", "iter_image_items"]


def iter_image_items(paths: Sequence[Path], *, limits: ArchiveLimits | None = None) -> Iterator[AnalyzeItem]:
    """One :class:`~faceprint.analyze.AnalyzeItem` per image of ``paths``, in order (folders sorted).

    A path that cannot be read (missing, a FIFO, an unreadable or corrupt archive) is one item carrying
    its error, so the rest is still done.
    """
    for path in paths:
        try:
            kind = detect_kind(path)
        except ArchiveError:
            # A regular file that is neither a folder nor an archive: an image (the decoder judges it).
            yield AnalyzeItem(str(path), path)
            continue
        except FaceprintError as err:
            yield AnalyzeItem(str(path), err)
            continue
        yield from _dataset_items(path, kind == "directory", limits)


def _dataset_items(path: Path, is_directory: bool, limits: ArchiveLimits | None) -> Iterator[AnalyzeItem]:
    try:
        with Dataset(path, limits=limits) as dataset:
            for error in dataset.rejected:
                name = str(error.details.get("name", "")) if error.details else ""
                if not name or looks_like_image_name(name):
                    yield AnalyzeItem(f"{path}/{name}" if name else str(path), error)
            names = sorted(name for name in dataset.names if looks_like_image_name(name))
            for name, data in dataset.iter_read(names):
                yield AnalyzeItem(f"{path}/{name}", data)
    except InputError as err:
        yield AnalyzeItem(str(path), err)


def count_image_items(paths: Sequence[Path]) -> int | None:
    """How many items :func:`iter_image_items` will give: files count one, folders their image files; None
    when an archive is among them (counting would mean reading it twice).

    Example:
        >>> count_image_items([Path("/nonexistent.jpg")])
        1
    """
    total = 0
    for path in paths:
        if path.is_dir():
            total += sum(1 for p in path.rglob("*") if p.is_file() and looks_like_image_name(p.name))
        elif path.is_file() and _is_archive(path):
            return None
        else:
            total += 1
    return total


def _is_archive(path: Path) -> bool:
    try:
        return detect_kind(path) != "directory"
    except FaceprintError:
        return False
