"""``faceprint keys create|list|revoke``: API keys of the job service, stored hashed in the data dir.

Also the encryption keys of data at rest: ``keys new-encryption-key FILE`` and ``keys rotate-encryption``.

Register with ``app.add_typer(keys_app, name="keys")``.

Example:
    $ faceprint keys create ci --data-dir /srv/faceprint
    $ faceprint keys revoke ci --data-dir /srv/faceprint
    $ FACEPRINT_ENCRYPTION_KEY_FILE=new.key faceprint keys rotate-encryption staff --old-key-file old.key
    $ FACEPRINT_ENCRYPTION_KEY_FILE=new.key faceprint keys rotate-encryption --data-dir /srv/faceprint \
        --old-key-file old.key
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from faceprint.cli.common import current_settings, handle_errors, print_json, stderr, stdout
from faceprint.cli.serve import DataDirOption

if TYPE_CHECKING:
    from faceprint.server.keys import KeyStore

keys_app = typer.Typer(name="keys", help="API keys of the job service (stored as sha256 in the data dir).")


def _store(data_dir: DataDirOption) -> KeyStore:
    from faceprint.server.keys import KeyStore
    from faceprint.server.settings import ServerSettings

    return KeyStore(ServerSettings(data_dir=data_dir).layout.keys_file)


@keys_app.command("create")
@handle_errors
def create(
    name: Annotated[str, typer.Argument(help="What the key is for (shown in listings).")],
    data_dir: DataDirOption = None,
) -> None:
    """Make a key; it is printed once, only its hash is kept."""
    record, secret = _store(data_dir).create(name)
    stderr().print(f"created key {record.id} ({record.name}); it is shown only now:", markup=False)
    stdout().print(secret, markup=False)


@keys_app.command("list")
@handle_errors
def list_keys(
    data_dir: DataDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Keys made with ``keys create`` (never their secrets)."""
    keys = _store(data_dir).keys()
    if as_json:
        print_json([{k: v for k, v in key.to_dict().items() if k != "sha256"} for key in keys])
        return
    table = Table("id", "name", "prefix", "created (unix s)")
    for key in keys:
        table.add_row(key.id, key.name, key.prefix + "…", f"{key.time_created_s:.0f}")
    stdout().print(table)


@keys_app.command("revoke")
@handle_errors
def revoke(
    ref: Annotated[str, typer.Argument(help="The key's id or name.")],
    data_dir: DataDirOption = None,
) -> None:
    """Remove a key: requests with it are refused from now on."""
    record = _store(data_dir).revoke(ref)
    stderr().print(f"revoked key {record.id} ({record.name})", markup=False)


@keys_app.command("new-encryption-key")
@handle_errors
def new_encryption_key(
    path: Annotated[Path, typer.Argument(help="The key file to create (mode 0600; never overwritten).")],
) -> None:
    """Make a random AES-256 key file for FACEPRINT_ENCRYPTION_KEY_FILE; keep a copy: data under a lost key is lost."""
    from faceprint.crypto import EncryptionKey

    key = EncryptionKey.generate()
    key.write_file(path)
    stderr().print(f"wrote encryption key {key.key_id} to {path}", markup=False)


@keys_app.command("rotate-encryption")
@handle_errors
def rotate_encryption(
    galleries: Annotated[
        list[str] | None,
        typer.Argument(help="Gallery names, .sqlite paths or postgresql://…?gallery=NAME URLs."),
    ] = None,
    old_key_file: Annotated[
        list[Path] | None,
        typer.Option("--old-key-file", help="A key the data is under now (repeatable); clear data needs none."),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Also a job service's data dir: its galleries, index, job results (jobs.sqlite or "
            "FACEPRINT_DATABASE_URL), uploads and result archives. Stop its server and workers first.",
        ),
    ] = None,
) -> None:
    """Re-encrypt in place under FACEPRINT_ENCRYPTION_KEY(_FILE); rerun it after a crash to finish."""
    from faceprint.crypto import EncryptionKey, EncryptionKeyRequiredError, cipher_from_settings
    from faceprint.errors import UsageError
    from faceprint.gallery.location import open_gallery

    if not galleries and data_dir is None:
        raise UsageError("name the galleries to rotate, or a job service's --data-dir")
    settings = current_settings()
    old = [EncryptionKey.from_file(path) for path in ([] if old_key_file is None else old_key_file)]
    cipher = cipher_from_settings(settings, previous_keys=old)
    if cipher is None:
        raise EncryptionKeyRequiredError("set the new key in FACEPRINT_ENCRYPTION_KEY or FACEPRINT_ENCRYPTION_KEY_FILE")
    out = stdout()
    for name in galleries or []:
        with open_gallery(name, settings=settings, cipher=cipher) as gallery:
            summary = gallery.rotate_encryption()
        out.print(
            f"{name}: {summary.templates_rotated} templates re-encrypted, {summary.templates_current} already "
            f"under key {cipher.key_id}",
            markup=False,
        )
    if data_dir is not None:
        from faceprint.jobs.rotation import rotate_data_dir
        from faceprint.server.settings import ServerSettings

        server = ServerSettings(data_dir=data_dir)
        store = server.open_job_store(cipher=cipher)
        try:
            done = rotate_data_dir(server.layout, store, cipher)
        finally:
            store.close()
        for gallery_done in done.galleries:
            out.print(
                f"{gallery_done.path}: {gallery_done.templates_rotated} templates re-encrypted, "
                f"{gallery_done.templates_current} already under key {cipher.key_id}",
                markup=False,
            )
        out.print(
            f"{data_dir}: {done.payloads.payloads_rotated} job payloads, {done.uploads_rotated} uploads and "
            f"{done.results_rotated} result archives re-encrypted; {done.payloads.payloads_current}, "
            f"{done.uploads_current} and {done.results_current} already under key {cipher.key_id}",
            markup=False,
        )
