"""Confidential pairs (enclave layout): nothing is written anywhere except the output directory.

Two proofs, because root ignores file modes (a ``chmod 0555`` tree stops nothing here):

1. a **read-only file system** for everything but the output: the job runs in a private mount namespace
   (``unshare -m``) where ``/`` is remounted read-only and only the output folder is bound read-write, so
   any write elsewhere fails loudly; skipped where mount namespaces are not allowed;
2. a **before/after snapshot** (path, size, mtime, inode) of HOME, TMPDIR, the model dir and the inputs,
   which runs everywhere: it catches a write that the code would have silently tolerated failing.

Both run the real CLI in a subprocess with the real dlib models, from a model dir prepared beforehand
(converted networks in place), as an enclave image would ship it; then the audit finds nothing in the
output, and a run without confidential mode on an unprepared model dir shows that the snapshot does see
cache writes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from faceprint.audit import audit_data_dir

pytestmark = pytest.mark.integration

PHOTOS = [
    "knn_examples/train/biden/biden.jpg",
    "knn_examples/train/biden/biden2.jpg",
    "knn_examples/train/alex_lacamoire/img1.jpg",
]


def _faceprint_command() -> list[str]:
    return [sys.executable, "-c", "from faceprint.cli.main import run; run()"]


@pytest.fixture(scope="module")
def prepared_models(tmp_path_factory: pytest.TempPathFactory, examples_dir: Path) -> Path:
    """A model dir with every conversion done, owned by this module, prepared as docs/privacy.md says."""
    model_dir = tmp_path_factory.mktemp("models")
    warm = os.environ.get("FACEPRINT_MODEL_DIR")
    if warm is not None and (Path(warm) / "converted").is_dir():
        shutil.copytree(Path(warm) / "converted", model_dir / "converted")  # saves converting again
    env = {**os.environ, "FACEPRINT_MODEL_DIR": str(model_dir)}
    env.pop("FACEPRINT_CONFIDENTIAL", None)
    photo = str(examples_dir / PHOTOS[0])
    prints = str(tmp_path_factory.mktemp("prepare") / "prints.jsonl")
    for args in (["detect", "--detector", "mmod", photo], ["embed", photo, "-o", prints]):
        done = subprocess.run([*_faceprint_command(), *args], env=env, capture_output=True, text=True, timeout=300)
        if done.returncode == 4:
            pytest.skip(f"real model weights unavailable: {done.stderr[-300:]}")
        assert done.returncode == 0, done.stderr
    return model_dir


def _tree(tmp_path: Path, examples: Path) -> dict[str, Path]:
    dirs = {name: tmp_path / name for name in ("home", "tmp", "inputs", "outputs")}
    for folder in dirs.values():
        folder.mkdir()
    dataset = dirs["inputs"] / "input-0001"
    dataset.mkdir()
    for photo in PHOTOS:
        shutil.copy(examples / photo, dataset / Path(photo).name)
    (dataset / "pairs.csv").write_text("file_a,file_b\nbiden.jpg,biden2.jpg\nbiden.jpg,img1.jpg\n")
    return dirs


def _env(dirs: dict[str, Path], model_dir: Path, *, confidential: bool) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FACEPRINT_", "XDG_")) and key not in ("HOME", "TMPDIR")
    }
    env.update(
        HOME=str(dirs["home"]),
        TMPDIR=str(dirs["tmp"]),
        FACEPRINT_MODEL_DIR=str(model_dir),
        FACEPRINT_WORKERS="2",
        PYTHONDONTWRITEBYTECODE="1",
    )
    if confidential:
        env["FACEPRINT_CONFIDENTIAL"] = "1"
    return env


def _snapshot(*roots: Path) -> dict[str, tuple[int, int, int]]:
    found: dict[str, tuple[int, int, int]] = {}
    for root in roots:
        for path in [root, *root.rglob("*")]:
            stat = path.lstat()
            found[str(path)] = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
    return found


def _pairs_args(dirs: dict[str, Path]) -> list[str]:
    return ["pairs", "--inputs-dir", str(dirs["inputs"]), "--output-dir", str(dirs["outputs"]), "--details", "-q"]


def _check_outputs(dirs: dict[str, Path]) -> None:
    outputs = sorted(p.relative_to(dirs["outputs"]).as_posix() for p in dirs["outputs"].rglob("*") if p.is_file())
    assert any(name.endswith(".tar.gz") for name in outputs), outputs
    assert "input-0001/output.csv" in outputs
    rows = (dirs["outputs"] / "input-0001" / "output.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[1].split(",")[4] == "true"  # biden/biden2: a match, so models really ran
    report = audit_data_dir(dirs["outputs"])
    assert report.clean, report.findings  # only results: no photo, no faceprint


def test_snapshot_nothing_but_the_output_changes(tmp_path: Path, examples_dir: Path, prepared_models: Path) -> None:
    dirs = _tree(tmp_path, examples_dir)
    watched = (dirs["home"], dirs["tmp"], dirs["inputs"], prepared_models)
    before = _snapshot(*watched)
    done = subprocess.run(
        [*_faceprint_command(), *_pairs_args(dirs)],
        env=_env(dirs, prepared_models, confidential=True),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert _snapshot(*watched) == before
    _check_outputs(dirs)


def test_the_snapshot_sees_cache_writes_without_confidential_mode(
    tmp_path: Path, examples_dir: Path, prepared_models: Path
) -> None:
    """The control: a plain run re-verifies the copied model dir and writes its digest cache there."""
    dirs = _tree(tmp_path, examples_dir)
    model_dir = tmp_path / "models"
    shutil.copytree(prepared_models, model_dir)
    (model_dir / "converted" / "verified-digests.json").unlink(missing_ok=True)
    before = _snapshot(model_dir)
    done = subprocess.run(
        [*_faceprint_command(), *_pairs_args(dirs)],
        env=_env(dirs, model_dir, confidential=False),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert _snapshot(model_dir) != before


def test_confidential_mode_refuses_an_unprepared_model_dir(tmp_path: Path, examples_dir: Path) -> None:
    dirs = _tree(tmp_path, examples_dir)
    empty_models = tmp_path / "models"
    empty_models.mkdir()
    done = subprocess.run(
        [*_faceprint_command(), *_pairs_args(dirs)],
        env=_env(dirs, empty_models, confidential=True),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 4, done.stderr
    assert "converted_model_missing" in done.stderr
    assert list(empty_models.iterdir()) == []
    assert "Traceback" not in done.stderr


def _mount_namespaces_work() -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", "mount -o remount,bind,ro / && ! touch /.probe"],
        capture_output=True,
        timeout=30,
    )
    return probe.returncode == 0


def test_read_only_file_system_except_the_output(tmp_path: Path, examples_dir: Path, prepared_models: Path) -> None:
    if not _mount_namespaces_work():
        pytest.skip("needs root and mount namespaces (unshare -m) to remount / read-only")
    dirs = _tree(tmp_path, examples_dir)
    out = str(dirs["outputs"])
    # Bind the output first (its own mount stays writable), then make / read-only in this namespace only
    # (a bind remount changes this namespace's mount flags, not the file system's); the probe
    # write into HOME must fail, or the proof proves nothing.
    script = (
        f'mount --bind "{out}" "{out}" && mount -o remount,bind,ro / && '
        f'if touch "$HOME/probe" 2>/dev/null; then echo "HOME is writable" >&2; exit 99; fi && '
        'exec "$@"'
    )
    done = subprocess.run(
        [
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
            *_faceprint_command(),
            *_pairs_args(dirs),
        ],
        env=_env(dirs, prepared_models, confidential=True),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    _check_outputs(dirs)
