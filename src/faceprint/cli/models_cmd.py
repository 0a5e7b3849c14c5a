"""``faceprint models add SPEC.toml [--file model.onnx]``: register a user ONNX embedding model.

No logic here beyond printing: :class:`~faceprint.models.registry.ModelRegistry` does the work.
``models_add`` is the plain function; ``models_add_command`` is its typer command, registered by
cli/main.py as ``faceprint models add``.

Example:
    $ faceprint models add octuplet.toml --file facetransformer_octuplet.onnx
    registered facetransformer-octuplet-512 (contract facetransformer-octuplet-512:3f0c...)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from faceprint.cli.common import handle_errors, print_json, stdout
from faceprint.models.registry import ModelRegistry, RegisteredModel


def models_add(spec: Path, file: Path | None = None, *, replace: bool = False) -> RegisteredModel:
    """Register the ONNX embedding model ``spec`` describes; with ``file``, verify and install the file too.

    Args:
        spec: the model's spec TOML (see :mod:`faceprint.models.registry` for the keys).
        file: the ONNX file, copied into the model directory after its sha256 and size are checked.
        replace: overwrite a registered model of the same id whose spec differs.

    Raises:
        UsageError: invalid spec, id clash, or missing ``file``.
        ChecksumMismatchError: the file is not the one the spec pins.
    """
    return ModelRegistry().add(spec, file=file, replace=replace)


@handle_errors
def models_add_command(
    spec: Annotated[Path, typer.Argument(help="Model spec TOML: id, file sha256/size, input size, scaling, ...")],
    file: Annotated[
        Path | None,
        typer.Option("--file", help="The ONNX file: verified against the spec, then copied into the model dir."),
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace a registered model of the same id (changes its contract).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Register a user ONNX embedding model: verify its file, store its spec (then use it by its id)."""
    result = models_add(spec, file, replace=replace)
    if as_json:
        print_json(
            {
                "id": result.spec.id,
                "contract_id": result.spec.contract_id,
                "spec_path": str(result.spec_path),
                "model_path": None if result.model_path is None else str(result.model_path),
                "install_path": str(result.install_path),
                "copied": result.copied,
                "unchanged": result.unchanged,
            }
        )
        return
    console = stdout()
    verb = "already registered" if result.unchanged else "registered"
    console.print(f"{verb} [bold]{escape(result.spec.id)}[/] (contract {escape(result.spec.contract_id)})")
    console.print(f"  spec: {escape(str(result.spec_path))}")
    if result.model_path is None:
        console.print(
            f"  [yellow]model file not there yet[/]: put it at {escape(str(result.install_path))} "
            "(or run again with --file)"
        )
    else:
        how = "copied to" if result.copied else "verified at"
        console.print(f"  model file {how} {escape(str(result.model_path))} (sha256 ok)")
