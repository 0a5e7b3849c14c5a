"""Galleries of enrolled persons and identification search.

Example:
    >>> from faceprint.gallery import SqliteGallery, search
    >>> gallery = SqliteGallery.open("staff.sqlite")  # doctest: +SKIP
    >>> search(probes, [gallery], top_k=3)  # doctest: +SKIP
    >>> staff = open_gallery_url("postgresql://db/faces?gallery=staff")  # doctest: +SKIP
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
from faceprint.gallery.migrate import migrate_gallery
from faceprint.gallery.open import open_gallery_url
from faceprint.gallery.pgvector import PgvectorGallery
from faceprint.gallery.search import MultiGalleryIndex, search
from faceprint.gallery.sqlite import SqliteGallery

__all__ = [
    "Gallery",
    "GallerySnapshot",
    "IdentifyResult",
    "MultiGalleryIndex",
    "Person",
    "PgvectorGallery",
    "SearchHit",
    "SqliteGallery",
    "Template",
    "migrate_gallery",
    "open_gallery_url",
    "resolve_person",
    "search",
]
