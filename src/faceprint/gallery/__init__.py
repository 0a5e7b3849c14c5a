"""Galleries of enrolled persons and identification search.

Example:
    >>> from faceprint.gallery import SqliteGallery, search
    >>> gallery = SqliteGallery.open("staff.sqlite")  # doctest: +SKIP
    >>> search(probes, [gallery], top_k=3)  # doctest: +SKIP
"""

from faceprint.gallery.base import (
    Gallery,
    GallerySnapshot,
    IdentifyResult,
    Person,
    SearchHit,
    Template,
    resolve_person,
)
from faceprint.gallery.search import MultiGalleryIndex, search
from faceprint.gallery.sqlite import SqliteGallery

__all__ = [
    "Gallery",
    "GallerySnapshot",
    "IdentifyResult",
    "MultiGalleryIndex",
    "Person",
    "SearchHit",
    "SqliteGallery",
    "Template",
    "resolve_person",
    "search",
]
