"""``faceprint gallery migrate SRC DST``: copy a gallery between SQLite and PostgreSQL, verified.

SRC and DST are each a gallery NAME (an SQLite file in the gallery directory), a path ending in
``.sqlite``, or a ``postgresql://…?gallery=NAME`` URL. DST must not exist yet.

Example:
    $ faceprint gallery migrate staff "postgresql://app@db.example.org/faces?gallery=staff"
    $ faceprint gallery migrate "postgresql://app@db.example.org/faces?gallery=staff" staff-copy.sqlite --json
"""

from __future__ import annotations

from typing import Annotated

import typer

from faceprint.cli.common import handle_errors, print_json, stdout

__all__ = ["migrate_command"]


@handle_errors
def migrate_command(
    source: Annotated[
        str, typer.Argument(help="Gallery to copy: NAME, path to .sqlite, or postgresql://…?gallery=NAME.")
    ],
    destination: Annotated[str, typer.Argument(help="New gallery to create: NAME, .sqlite path or postgresql:// URL.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Copy a gallery to another backend (SQLite <-> PostgreSQL), verified: persons, templates, unknowns, contract."""
    from faceprint.cli.common import current_settings
    from faceprint.crypto import cipher_from_settings
    from faceprint.gallery.migrate import migrate_gallery
    from faceprint.gallery.open import resolve_gallery_ref

    settings = current_settings()
    directory = settings.gallery_dir
    summary = migrate_gallery(
        resolve_gallery_ref(source, gallery_dir=directory),
        resolve_gallery_ref(destination, gallery_dir=directory),
        cipher=cipher_from_settings(settings),
    )
    if as_json:
        print_json(summary.to_dict())
        return
    stdout().print(
        f"copied {summary.persons} person(s) ({summary.unknowns} unknown), {summary.templates} template(s) "
        f"from {summary.source} to {summary.destination}; verified",
        markup=False,
    )
