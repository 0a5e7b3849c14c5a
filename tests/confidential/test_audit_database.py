"""``faceprint audit postgresql://…``: a pgvector gallery and a clear image in a bytea column are found."""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from faceprint.audit import audit_database
from faceprint.cli.common import CliContext
from faceprint.cli.main import app
from faceprint.crypto import EncryptionKey, RecordCipher
from faceprint.settings import Settings
from faceprint.types import Faceprint


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(out, "JPEG")
    return out.getvalue()


@pytest.fixture
def schema_url(postgres_url: str) -> Iterator[tuple[str, str]]:
    """A database URL whose search path is a fresh schema, dropped after the test."""
    from faceprint.postgres import connect

    name = f"audit_{np.random.default_rng().integers(1 << 30)}"
    with connect(postgres_url) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    yield f"{postgres_url}{'&' if '?' in postgres_url else '?'}options=-csearch_path%3D{name}", name
    with connect(postgres_url) as conn:
        conn.execute(f"DROP SCHEMA {name} CASCADE")


def test_database_audit(schema_url: tuple[str, str]) -> None:
    from faceprint.postgres import connect, redact_url

    url, schema = schema_url
    cipher = RecordCipher(EncryptionKey.generate())
    vector = np.random.default_rng(1).normal(size=128).astype("<f4")
    with connect(url) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        # The extension may already live in another schema (an earlier test created it): name its type fully.
        row = conn.execute(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
            " WHERE e.extname = 'vector'"
        ).fetchone()
        assert row is not None
        conn.execute("CREATE TABLE photos (id int PRIMARY KEY, data bytea, note text)")
        conn.execute("CREATE TABLE sealed (id int PRIMARY KEY, data bytea)")
        conn.execute(f'CREATE TABLE prints (id int PRIMARY KEY, embedding "{row[0]}".vector(128))')
        conn.execute("INSERT INTO photos VALUES (1, %s, 'fine')", (_jpeg(),))
        fp = Faceprint(vector, model_id="m", contract_id="m:1", package_version="0")
        conn.execute("INSERT INTO photos VALUES (2, NULL, %s)", (fp.to_json(),))
        conn.execute("INSERT INTO sealed VALUES (1, %s)", (cipher.encrypt(vector.tobytes(), context="x"),))
        conn.execute("INSERT INTO prints VALUES (1, %s)", ("[" + ",".join(str(float(v)) for v in vector) + "]",))
    report = audit_database(url)
    mine = {(f.kind, f.what, f.where) for f in report.findings if f.where is not None and f.where.startswith(schema)}
    assert mine == {
        ("image", "JPEG", f"{schema}.photos.data"),
        ("vector", "faceprint JSON x 128", f"{schema}.photos.note"),
        ("vector", "pgvector column (1 vectors)", f"{schema}.prints.embedding"),
    }
    assert report.root == redact_url(url)
    result = CliRunner().invoke(app, ["audit", url, "--json"], obj=CliContext(Settings()))
    assert result.exit_code == 1, result.output
