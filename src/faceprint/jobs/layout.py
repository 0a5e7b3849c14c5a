"""Where the job service keeps things in its data dir (one rule for the server, the workers and the CLI).

Example:
    >>> layout = DataLayout(Path("/srv/faceprint"))
    >>> layout.jobs_db, layout.gallery_dir
    (PosixPath('/srv/faceprint/jobs.sqlite'), PosixPath('/srv/faceprint/galleries'))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["DataLayout"]


@dataclass(frozen=True, slots=True)
class DataLayout:
    """The files of one data dir."""

    root: Path

    @property
    def jobs_db(self) -> Path:
        return self.root / "jobs.sqlite"

    @property
    def uploads_dir(self) -> Path:
        return self.root / "uploads"

    @property
    def gallery_dir(self) -> Path:
        """One ``NAME.sqlite`` per gallery (a DeepVA "model")."""
        return self.root / "galleries"

    @property
    def index_gallery(self) -> Path:
        """The index of unknowns: persistent unknown persons, outside the galleries."""
        return self.root / "index" / "unknowns.sqlite"

    @property
    def results_dir(self) -> Path:
        return self.root / "results"

    @property
    def keys_file(self) -> Path:
        """API keys created with ``faceprint keys create`` (sha256 hashes only)."""
        return self.root / "keys.json"

    def result_path(self, job_id: str) -> Path:
        return self.results_dir / f"{job_id}.tar.gz"
