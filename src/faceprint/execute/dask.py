"""Run the engine's work on a Dask distributed cluster: ``--executor dask://HOST:PORT``.

The executor sends the :class:`~faceprint.execute.base.WorkerProgram` to every worker once, as a worker
plugin: the plugin builds the program's state (the model pipeline) when it is registered on a worker,
and when a worker joins later, and keeps it while the worker lives, so no task ever loads a model. Tasks
travel in chunks (``chunk_size`` items per Dask task, to amortise the scheduler's per-task cost), and at
most ``chunks_per_thread`` chunks per worker thread are in flight: the client pulls the next items from
the caller's iterator only as results come back, so memory stays bounded on the client and on the
workers whatever the size of the job.

When a worker dies mid-chunk the scheduler gives its chunks to another worker (Dask's own recovery).
A chunk that keeps killing workers (``KilledWorker``) is split and its items run alone, one at a time
with nothing else in flight, so the one poisonous item becomes a ``crashed`` result and the others are
still computed. Results are yielded as
they complete, tagged with the caller's task ids; the engine restores input order, which is why the
output archive is byte-identical to a local run.

Start a cluster with the ``dask`` extra installed (the same faceprint version everywhere)::

    dask scheduler --host 0.0.0.0 --port 8786
    dask worker tcp://scheduler:8786 --nthreads 1 --nworkers 2     # on each worker host

Example:
    >>> with DaskExecutor.from_url("dask://127.0.0.1:8786") as executor:  # doctest: +SKIP
    ...     sorted(executor.run(program, iter([(0, "a.jpg"), (1, "b.jpg")])))
"""

from __future__ import annotations

import hashlib
import pickle
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar
from urllib.parse import urlsplit

from faceprint.errors import BackendUnavailableError, FaceprintError, InputError, UsageError
from faceprint.execute.base import CancelledError, WorkerProgram

if TYPE_CHECKING:
    from distributed import Client, Future

try:  # the plugin must subclass WorkerPlugin; without the 'dask' extra the executor refuses to start
    from distributed import WorkerPlugin as _WorkerPluginBase
except ImportError:  # pragma: no cover - exercised only without the extra
    _WorkerPluginBase = object  # type: ignore[misc,assignment]

__all__ = ["DaskExecutor", "DaskUnavailableError", "ProgramPlugin", "parse_dask_url"]

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")

DASK_SCHEME = "dask://"
DEFAULT_PORT = 8786


class DaskUnavailableError(FaceprintError):
    """The Dask scheduler cannot be reached, or has no workers to run on."""

    code = "dask_unavailable"
    http_status = 503


def parse_dask_url(url: str) -> str:
    """The scheduler address (``tcp://host:port``) of a ``dask://HOST[:PORT]`` executor URL.

    Raises:
        UsageError: not a ``dask://`` URL, or no host.

    Example:
        >>> parse_dask_url("dask://10.0.0.5:8786")
        'tcp://10.0.0.5:8786'
        >>> parse_dask_url("dask://scheduler")
        'tcp://scheduler:8786'
    """
    if not url.startswith(DASK_SCHEME):
        raise UsageError(f"a Dask executor is given as dask://HOST:PORT, got {url!r}")
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError as err:
        raise UsageError(f"bad port in {url!r}") from err
    if not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise UsageError(f"a Dask executor is given as dask://HOST:PORT, got {url!r}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"tcp://{host}:{DEFAULT_PORT if port is None else port}"


def _distributed() -> Any:
    try:
        import distributed
    except ImportError as err:
        raise BackendUnavailableError(
            "the Dask executor needs the optional 'dask' extra: pip install 'faceprint[dask]'",
            details={"extra": "dask"},
        ) from err
    return distributed


class ProgramPlugin(_WorkerPluginBase):
    """Holds a worker program and its built state on one Dask worker (a ``distributed.WorkerPlugin``).

    ``setup`` builds the state once per worker; a build failure is kept and raised by every task, so the
    caller sees the model error instead of a hang.

    Example:
        >>> plugin = ProgramPlugin("faceprint-program-x", program)  # doctest: +SKIP
    """

    idempotent = True
    """Registering an equal program again (same name) is a no-op: the built state is kept."""

    def __init__(self, name: str, program_blob: bytes) -> None:
        self.name = name
        self.program_blob = program_blob
        self.program: Any = None
        self.state: Any = None
        self.error: BaseException | None = None
        self.builds = 0
        self.lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name, "program_blob": self.program_blob}

    def __setstate__(self, values: dict[str, Any]) -> None:
        ProgramPlugin.__init__(self, values["name"], values["program_blob"])

    def setup(self, worker: Any) -> None:
        with self.lock:
            try:
                self.program = pickle.loads(self.program_blob)
                self.state = self.program.build()
                self.builds += 1
            except BaseException as err:  # kept for the tasks: a plugin error alone only reaches the logs
                self.error = err

    def teardown(self, worker: Any) -> None:
        self.state = None


def _run_chunk(plugin_name: str, chunk: Sequence[tuple[int, Any]]) -> list[tuple[int, Any, int]]:
    """Runs on a worker: ``(task_id, result, builds so far)`` for each item of the chunk."""
    from distributed import get_worker

    worker = get_worker()
    plugin: Any = worker.plugins.get(plugin_name)
    if plugin is None:
        raise DaskUnavailableError(f"worker {worker.address} lacks the faceprint program {plugin_name}")
    if plugin.error is not None:
        raise plugin.error
    program = plugin.program
    out: list[tuple[int, Any, int]] = []
    # The state (a model pipeline) is not thread-safe: a worker with several threads runs one item at a time.
    with plugin.lock:
        for task_id, task in chunk:
            try:
                result = program.run(plugin.state, task)
            except InputError as err:
                result = program.failed(task, err.message, crashed=False)
            except FaceprintError:
                raise
            except Exception as err:  # one odd item must not stop the others
                result = program.failed(task, f"{type(err).__name__}: {err}", crashed=False)
            out.append((task_id, result, plugin.builds))
    return out


class DaskExecutor:
    """Runs worker programs on a Dask distributed cluster (see the module doc).

    Args:
        address: the scheduler, ``tcp://host:port`` (or use :meth:`from_url` with ``dask://host:port``).
        client: an existing ``distributed.Client`` instead (e.g. of a ``LocalCluster``); not closed here.
        chunk_size: items per Dask task.
        chunks_per_thread: chunks in flight per worker thread (memory bound: chunk_size × this × threads).
        connect_timeout_s: how long to wait for the scheduler and for a first worker.

    Raises:
        DaskUnavailableError: the scheduler cannot be reached or no worker joins in time.
        UsageError: bad sizes, or neither / both of ``address`` and ``client``.

    Example:
        >>> DaskExecutor.from_url("dask://127.0.0.1:8786", chunk_size=16)  # doctest: +SKIP
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        client: Client | None = None,
        chunk_size: int = 8,
        chunks_per_thread: int = 2,
        connect_timeout_s: float = 30.0,
    ) -> None:
        if (address is None) == (client is None):
            raise UsageError("give a scheduler address or a client (one of them)")
        if chunk_size < 1 or chunks_per_thread < 1:
            raise UsageError(
                f"chunk_size and chunks_per_thread must be at least 1, got {chunk_size}, {chunks_per_thread}"
            )
        distributed = _distributed()
        self._chunk_size = chunk_size
        self._chunks_per_thread = chunks_per_thread
        self._timeout_s = connect_timeout_s
        self._lock = threading.Lock()
        self._registered: list[tuple[object, str]] = []
        self._owns_client = client is None
        self._address = "" if address is None else address
        if client is None:
            try:
                client = distributed.Client(address, timeout=connect_timeout_s, set_as_default=False)
            except (OSError, TimeoutError) as err:
                raise DaskUnavailableError(
                    f"cannot reach the Dask scheduler at {address}: {err}", details={"address": address}
                ) from err
        self._client: Client = client

    @classmethod
    def from_url(cls, url: str, **options: Any) -> DaskExecutor:
        """Connect to the scheduler of a ``dask://HOST:PORT`` URL."""
        return cls(parse_dask_url(url), **options)

    @property
    def client(self) -> Client:
        return self._client

    def _threads(self) -> int:
        threads: dict[str, int] = self._client.nthreads()  # type: ignore[no-untyped-call]
        return max(1, sum(int(n) for n in threads.values()))

    @property
    def slots(self) -> int:
        """Items in flight at once over the whole cluster (as it is now)."""
        return self._chunk_size * self._chunks_per_thread * self._threads()

    def close(self) -> None:
        with self._lock:
            if self._owns_client:
                self._client.close()  # type: ignore[no-untyped-call]

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    # --- work ---------------------------------------------------------------------------------------------

    def _register(self, program: WorkerProgram[Any, Any, Any]) -> str:
        import cloudpickle  # type: ignore[import-untyped]

        try:
            # cloudpickle: programs defined where workers cannot import them (a notebook, a script) travel too.
            blob = cloudpickle.dumps(program)
        except (pickle.PicklingError, AttributeError, TypeError) as err:
            raise UsageError(f"the work cannot be sent to Dask workers ({err})") from err
        # An equal program (same factory and settings) keeps the states the workers built for it.
        known = next((name for seen, name in self._registered if seen == program), None)
        if known is not None:
            return known
        name = "faceprint-program-" + hashlib.sha256(blob).hexdigest()[:16]
        if name not in {name for _, name in self._registered}:
            try:
                self._client.wait_for_workers(1, timeout=self._timeout_s)
            except TimeoutError as err:
                raise DaskUnavailableError(
                    f"no Dask worker joined the scheduler within {self._timeout_s:g} s",
                    details={"scheduler": self._address},
                ) from err
            self._client.register_plugin(ProgramPlugin(name, blob), name=name)
            self._registered.append((program, name))
        return name

    def run(
        self,
        program: WorkerProgram[S, T, R],
        tasks: Iterator[tuple[int, T]],
        *,
        cancel: threading.Event | None = None,
    ) -> Iterator[tuple[int, R]]:
        with self._lock:  # one run at a time per executor; other callers wait for their turn
            yield from self._run(program, tasks, cancel)

    def _run(
        self, program: WorkerProgram[S, T, R], tasks: Iterator[tuple[int, T]], cancel: threading.Event | None
    ) -> Iterator[tuple[int, R]]:
        distributed = _distributed()
        name = self._register(program)
        limit = self._chunks_per_thread * self._threads()
        pending = distributed.as_completed(loop=self._client.loop)
        live: dict[Any, Future[Any]] = {}
        chunks: dict[Any, list[tuple[int, T]]] = {}
        alone: set[Any] = set()
        retry: deque[list[tuple[int, T]]] = deque()
        exhausted = False

        def submit(chunk: list[tuple[int, T]], *, single: bool = False) -> None:
            future: Future[Any] = self._client.submit(_run_chunk, name, chunk, pure=False)
            live[future.key] = future
            chunks[future.key] = chunk
            if single:
                alone.add(future.key)
            pending.add(future)

        try:
            while True:
                cancelled = cancel is not None and cancel.is_set()
                while not cancelled and len(chunks) < limit and (retry or not exhausted):
                    if retry:
                        # Quarantine: the items of a chunk that killed workers run one at a time with nothing
                        # else in flight, so a worker death is pinned on the one item that caused it.
                        if not chunks:
                            submit(retry.popleft(), single=True)
                        break
                    chunk = [item for _, item in zip(range(self._chunk_size), tasks, strict=False)]
                    if not chunk:
                        exhausted = True
                        break
                    submit(chunk)
                if not chunks:
                    if cancelled:
                        raise CancelledError("cancelled")
                    return
                future = next(pending)
                chunk = chunks.pop(future.key)
                live.pop(future.key, None)
                try:
                    done = future.result()
                except distributed.KilledWorker:
                    if future.key in alone:
                        task_id, task = chunk[0]
                        yield task_id, program.failed(task, "Dask workers kept dying on it", crashed=True)
                    else:
                        # Split the chunk: the item that kills workers fails alone, the others are computed.
                        retry.extend([item] for item in chunk)
                    continue
                finally:
                    alone.discard(future.key)
                    future.release()
                for task_id, result, _ in done:
                    yield task_id, result
        finally:
            # An error, or a consumer that stopped early: nothing of this run is left running on the cluster.
            if live:
                self._client.cancel(list(live.values()))  # type: ignore[no-untyped-call]
