"""``faceprint audit DATA_DIR|DATABASE_URL``: is any face data kept in clear? The exit code is the verdict.

0: clean; 1: findings (each listed); 2/3: the audit could not run (no such directory). Register with
``app.command(name="audit")(audit)``.

Example:
    $ faceprint audit /srv/faceprint --json
    $ faceprint audit postgresql://auditor@db.example.org/faces
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from faceprint.cli.common import handle_errors, print_json, stderr, stdout


@handle_errors
def audit(
    target: Annotated[
        str, typer.Argument(help="The data dir (every file under it) or a postgresql:// URL to scan, read only.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Scan a data dir or a database for stored images, videos, plaintext face vectors and leftover uploads."""
    from faceprint.audit import audit_data_dir, audit_database
    from faceprint.postgres import is_database_url

    report = audit_database(target) if is_database_url(target) else audit_data_dir(Path(target).expanduser())
    if as_json:
        print_json(report.to_dict())
    else:
        if report.findings:
            table = Table("kind", "what", "file", "where", "offset")
            for finding in report.findings:
                table.add_row(
                    finding.kind,
                    finding.what,
                    str(finding.path),
                    "" if finding.where is None else finding.where,
                    "" if finding.offset is None else str(finding.offset),
                )
            stdout().print(table)
        verdict = "clean" if report.clean else f"{len(report.findings)} finding(s)"
        stderr().print(
            f"{verdict}: {report.files_scanned} files, {report.bytes_scanned} bytes scanned, "
            f"{len(report.skipped)} skipped",
            markup=False,
        )
    if not report.clean:
        raise typer.Exit(code=1)
