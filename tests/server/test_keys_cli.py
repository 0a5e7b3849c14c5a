"""``faceprint keys create|list|revoke`` through the main app: the secret shown once, only its hash kept."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from faceprint.cli.main import app
from faceprint.server.app import create_app
from faceprint.server.settings import ServerSettings

from .conftest import FAKE


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    data = tmp_path / "data"
    runner = CliRunner()
    created = runner.invoke(app, ["keys", "create", "ci", "--data-dir", str(data)])
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("fpk_") and secret not in (data / "keys.json").read_text()
    listed = runner.invoke(app, ["keys", "list", "--data-dir", str(data), "--json"])
    (entry,) = json.loads(listed.stdout)
    assert entry["name"] == "ci" and "sha256" not in entry and secret.startswith(entry["prefix"])
    settings = ServerSettings(data_dir=data, pipeline_factory=FAKE)
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/v1/jobs/", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
        revoked = runner.invoke(app, ["keys", "revoke", "ci", "--data-dir", str(data)])
        assert revoked.exit_code == 0, revoked.output
        assert client.get("/api/v1/jobs/", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    missing = runner.invoke(app, ["keys", "revoke", "nope", "--data-dir", str(data)])
    assert missing.exit_code != 0 and "key_not_found" in missing.output
