"""``faceprint keys create|list|revoke``: API keys of the job service, stored hashed in the data dir.

Register with ``app.add_typer(keys_app, name="keys")``.

Example:
    $ faceprint keys create ci --data-dir /srv/faceprint
    $ faceprint keys revoke ci --data-dir /srv/faceprint
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from faceprint.cli.common import handle_errors, print_json, stderr, stdout
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
