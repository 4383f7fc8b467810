"""Where archive tasks run: in this process (one worker, no address) or on Ray (docs/method.md §14).

A *worker* is a class built once per process from keyword arguments (it holds one occlusion executor
or one ONNX Runtime session) whose ``__call__(task)`` turns one task (a dict) into one result (a dict).
:func:`run_tasks` feeds it a list of tasks and yields ``(task index, result, attempts)`` as results
arrive, in any order:

- ``workers == 1`` and no address: one worker in this process, tasks in order;
- otherwise Ray Data: ``from_items`` (one block per task, so every actor gets work) ->
  ``map_batches(worker, batch_size=1, compute=ActorPoolStrategy(size=workers))``; each actor
  reserves ``threads`` CPUs and runs ONNX Runtime with that many intra-op threads. A local Ray is
  started with the machine's CPUs (and shut down afterwards) unless one is running already; with an
  address, the cluster there is joined. An actor that dies is restarted and its tasks retried (Ray
  Data's actor pool default); an :class:`AttemptLog` actor counts each task's starts, so retries are
  recorded, and a task started more than ``1 + MAX_RETRIES`` times fails the run.

Threads: ONNX Runtime's results change in the last bits with the intra-op thread count (measured:
1.5e-10 in one cell of one 15x15 map, 1 vs 2 threads), so the thread count is a setting of the
results, not of the backend: it defaults to 1 per worker whatever the number of workers, and
workers x threads must fit the CPUs. Same threads => the same bytes for any number of workers.

Ray is optional (``pip install 'etdeploy[ray]'``); without it, asking for more than one worker or an
address raises :class:`~etdeploy.errors.ConfigError` saying so.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from etdeploy.errors import ConfigError, EtdeployError

__all__ = ["INSTALL_HINT", "MAX_RETRIES", "Backend", "available_cpus", "open_backend", "run_tasks"]

INSTALL_HINT = "pip install 'etdeploy[ray]' (or: pip install 'ray[data]')"
#: Retries of a task whose actor died (Ray Data restarts the actor and resubmits; the 5th start fails the run).
MAX_RETRIES = 3


def available_cpus() -> int:
    """CPUs this process may use (its affinity mask)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Backend:
    """How tasks run: ``kind`` ``"local"`` (this process) or ``"ray"``; ``workers`` (actors); ``threads``
    (ORT intra-op threads per worker); ``cpus`` (CPUs of the machine or cluster, workers x threads <= cpus);
    ``address`` (Ray cluster; None: local)."""

    kind: str
    workers: int
    threads: int
    cpus: int
    address: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "workers": self.workers, "threads_per_worker": self.threads, "cpus": self.cpus,
                "address": self.address}


def _import_ray():
    try:
        import ray
        import ray.data
    except ImportError:
        raise ConfigError(f"more than one worker or a Ray address needs Ray, which is not installed: {INSTALL_HINT}") \
            from None
    return ray


def _ensure_ray(address: str | None, cpus: int) -> tuple[Any, bool]:
    """``(ray, started_here)``: connect to ``address``, reuse a running Ray, or start a local one."""
    ray = _import_ray()
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")  # never phone home
    if ray.is_initialized():
        return ray, False
    try:
        if address is not None:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        else:
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    except ConnectionError as exc:
        raise ConfigError(f"cannot reach the Ray cluster at {address!r}: {exc}") from exc
    return ray, True


def require_backend(workers: int, address: str | None) -> None:
    """Fail early (before any work) when ``workers``/``address`` need Ray and it is not installed."""
    if workers > 1 or address is not None:
        _import_ray()


@contextlib.contextmanager
def open_backend(workers: int, *, address: str | None = None, threads: int = 1) -> Iterator[Backend]:
    """The backend for ``workers`` workers: local with 1 worker and no address, else Ray (joined at
    ``address``, a running one reused, or a local one started here and shut down on exit). ``threads``
    ORT intra-op threads per worker; workers x threads must fit the CPUs."""
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    if workers == 1 and address is None:
        cpus = available_cpus()
        if threads > cpus:
            raise ConfigError(f"{threads} threads need {threads} CPUs; this machine has {cpus}")
        yield Backend("local", 1, threads, cpus)
        return
    ray, started = _ensure_ray(address, available_cpus())
    try:
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if workers * threads > cpus:
            raise ConfigError(f"{workers} worker(s) x {threads} thread(s) need {workers * threads} CPUs; Ray has "
                              f"{cpus}" + (f" at {address}" if address else " here")
                              + "; ask for fewer workers or threads")
        yield Backend("ray", workers, threads, cpus, address)
    finally:
        if started:
            ray.shutdown()


def _tagged(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.ndarray):
        from etdeploy.occlusion.output import npy_bytes

        return {"__npy__": base64.b64encode(npy_bytes(obj)).decode("ascii")}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, bytes):
        return {"__bytes__": base64.b64encode(obj).decode("ascii")}
    raise TypeError(f"cannot send a {type(obj).__name__} between workers")


def _untagged(obj: dict[str, Any]) -> Any:
    import numpy as np

    if set(obj) == {"__npy__"}:
        return np.load(io.BytesIO(base64.b64decode(obj["__npy__"])), allow_pickle=False)
    if set(obj) == {"__bytes__"}:
        return base64.b64decode(obj["__bytes__"])
    return obj


def encode(obj: Any) -> bytes:
    """A task or result as bytes for a Ray Data row: JSON, with numpy arrays (as .npy) and bytes in base64.
    No pickle: nothing a worker receives can run code when decoded."""
    return json.dumps(obj, default=_tagged, allow_nan=True).encode("utf-8")


def decode(data: bytes) -> Any:
    """The inverse of :func:`encode` (floats round-trip exactly: JSON keeps ``repr``)."""
    return json.loads(data, object_hook=_untagged)


class AttemptLog:
    """Counts how often each task was started (a Ray actor shared by the workers; a dict in-process)."""

    def __init__(self):
        self.starts: dict[int, int] = {}

    def started(self, task: int) -> int:
        self.starts[task] = self.starts.get(task, 0) + 1
        return self.starts[task]

    def counts(self) -> dict[int, int]:
        return dict(self.starts)


class _RayAdapter:
    """Ray Data callable: builds the worker once (one per actor), then one task per batch row."""

    def __init__(self, worker_cls, worker_kwargs, attempts):
        self.worker = worker_cls(**worker_kwargs)
        self.attempts = attempts

    def __call__(self, batch):
        import numpy as np
        import ray

        tasks, results = [], []
        for index, payload in zip(batch["task"], batch["payload"]):
            attempt = ray.get(self.attempts.started.remote(int(index)))
            if attempt > MAX_RETRIES + 1:
                raise EtdeployError(f"task {int(index)}: its worker died {attempt - 1} times; giving up")
            result = {**self.worker(decode(payload)), "attempt": int(attempt)}
            tasks.append(int(index))
            results.append(encode(result))
        return {"task": np.asarray(tasks, dtype=np.int64), "result": np.asarray(results, dtype=object)}


def run_tasks(worker_cls, worker_kwargs: dict[str, Any], tasks: Sequence[dict[str, Any]],
              backend: Backend) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(task index, result)`` for every task, as they finish, on an open ``backend``
    (:func:`open_backend`). ``worker_kwargs`` gets ``threads`` (the backend's per worker); each result
    gets ``attempt``: how many times its task was started (1 = no retry)."""
    kwargs = {**worker_kwargs, "threads": backend.threads}
    if backend.kind == "local":
        worker = worker_cls(**kwargs)
        for index, task in enumerate(tasks):
            yield index, {**worker(task), "attempt": 1}
        return
    import ray
    from ray.data import ActorPoolStrategy, DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False  # etdeploy draws one bar over images
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    log = ray.remote(num_cpus=0)(AttemptLog).remote()
    try:

        items = [{"task": i, "payload": encode(task)}
                 for i, task in enumerate(tasks)]
        dataset = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
        mapped = dataset.map_batches(
            _RayAdapter, fn_constructor_kwargs={"worker_cls": worker_cls, "worker_kwargs": kwargs,
                                                "attempts": log},
            batch_size=1, batch_format="numpy", compute=ActorPoolStrategy(size=backend.workers),
            num_cpus=backend.threads)
        for row in mapped.iter_rows():
            yield int(row["task"]), decode(row["result"])
    finally:
        ray.kill(log)
