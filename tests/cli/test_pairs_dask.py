"""``faceprint pairs --executor dask://HOST:PORT`` writes the same archive as a local run."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from faceprint.cli.common import CliContext
from faceprint.cli.main import build_app
from faceprint.settings import load_settings
from faceprint.testing import fake_pipeline_factory, make_face_png, make_two_face_png

distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")


def test_pairs_on_a_dask_cluster_gives_the_local_archive(tmp_path: Path) -> None:
    dataset = tmp_path / "ds"
    dataset.mkdir()
    for number in range(6):
        (dataset / f"{number}.png").write_bytes(make_face_png((40 * number, 60, 90)))
    (dataset / "two.png").write_bytes(make_two_face_png((200, 30, 30), (30, 30, 200)))
    (dataset / "pairs.csv").write_text("".join(f"{n}.png,two.png\n" for n in range(6)) + "0.png,1.png\n")
    context = CliContext(settings=load_settings(), pipeline_factory=fake_pipeline_factory)
    runner = CliRunner()
    local = runner.invoke(build_app(), ["pairs", str(dataset), "-o", str(tmp_path / "local.tgz"), "-q"], obj=context)
    assert local.exit_code == 0, local.output
    # A real scheduler with one worker process on loopback, reached by its dask:// URL.
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
    ) as cluster:
        url = cluster.scheduler_address.replace("tcp://", "dask://")
        args = ["pairs", str(dataset), "-o", str(tmp_path / "dask.tgz"), "-q", "--executor", url]
        remote = runner.invoke(build_app(), args, obj=context)
    assert remote.exit_code == 0, remote.output
    assert (tmp_path / "dask.tgz").read_bytes() == (tmp_path / "local.tgz").read_bytes()
