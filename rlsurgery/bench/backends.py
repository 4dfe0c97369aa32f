"""Where a study's runs execute: a local process pool (default) or Ray tasks.

A backend takes run dicts and yields events: ``("started", run_id)`` when a run begins
and ``("finished", result)`` when it ends (done or failed). The driver writes every
result to the study store; workers never touch it. Neither backend schedules anything
itself: the local one is :class:`concurrent.futures.ProcessPoolExecutor`, the other Ray.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from rlsurgery.bench.worker import execute_run

Event = tuple[str, Any]

#: a run whose worker process died this many times is stored as failed
MAX_WORKER_DEATHS = 2


def _init_worker() -> None:
    """Worker set-up: one torch thread, Ctrl-C handled by the driver, die with the driver."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(
            Exception
        ):  # best effort: without it a killed driver's workers finish their run
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    import torch as th

    th.set_num_threads(1)
    # import every surgery now, so that the worker runs one version of the code for its whole
    # life (a lazy import later could mix in files edited while the study runs)
    from rlsurgery import catalog

    catalog.entries()
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _lost_worker_result(run: dict[str, Any], deaths: int) -> dict[str, Any]:
    return {
        "run_id": run["run_id"],
        "status": "failed",
        "error": f"the worker process running this run died {deaths} times (killed, or out of memory)",
    }


class LocalBackend:
    """A local process pool: ``workers`` processes, each running one run at a time.

    A worker that dies (killed, out of memory) breaks the pool: the runs it was running are
    retried in a fresh pool, and stored as failed after :data:`MAX_WORKER_DEATHS` deaths.

    :param workers: number of worker processes
    """

    name = "local"

    def __init__(self, workers: int) -> None:
        self.workers = max(1, int(workers))
        self._pool: ProcessPoolExecutor | None = None

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers, mp_context=mp.get_context("spawn"), initializer=_init_worker
        )

    def execute(
        self, runs: list[dict[str, Any]], task: Callable[[dict[str, Any]], Any] = execute_run
    ) -> Iterator[Event]:
        """Run ``runs`` (``task(run)`` each: a study's run by default) and yield their events (at most
        ``workers`` in flight)."""
        queue = deque(runs)
        deaths: dict[str, int] = {}
        in_flight: dict[Future, dict[str, Any]] = {}
        self._pool = self._new_pool()
        try:
            while queue or in_flight:
                while queue and len(in_flight) < self.workers:
                    run = queue.popleft()
                    in_flight[self._pool.submit(task, run)] = run
                    yield "started", run["run_id"]
                finished, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
                broken = False
                for future in finished:
                    run = in_flight.pop(future)
                    try:
                        yield "finished", future.result()
                    except BrokenProcessPool:
                        broken = True
                        in_flight[future] = run
                if broken:
                    for run in in_flight.values():
                        deaths[run["run_id"]] = deaths.get(run["run_id"], 0) + 1
                        if deaths[run["run_id"]] >= MAX_WORKER_DEATHS:
                            yield "finished", _lost_worker_result(run, deaths[run["run_id"]])
                        else:
                            queue.appendleft(run)
                    in_flight.clear()
                    self._pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = self._new_pool()
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        """Stop the workers now (runs in flight are abandoned)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        processes = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            with contextlib.suppress(Exception):
                process.kill()
        for process in processes:
            with contextlib.suppress(Exception):
                process.join(timeout=5)


class RayBackend:
    """Runs as Ray tasks, one CPU each; results come back to the driver.

    :param address: a Ray cluster address (``ray.init(address=...)``); ``None`` starts a local Ray
    :param num_cpus: CPUs of a local Ray (ignored with ``address``)
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        try:
            import ray
        except ImportError as exc:  # pragma: no cover - depends on the extra
            from rlsurgery.core.errors import StudyError

            raise StudyError("--backend ray needs the 'ray' extra: pip install 'rlsurgery[ray]'") from exc
        self.ray = ray
        self.address = address
        self.num_cpus = num_cpus
        self._refs: list[Any] = []

    def _init(self) -> None:
        if self.ray.is_initialized():
            return
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if self.address:
            kwargs["address"] = self.address
        else:
            kwargs["num_cpus"] = self.num_cpus
        # workers start with the driver's environment; keep each to one thread
        kwargs["runtime_env"] = {"env_vars": {"OMP_NUM_THREADS": "1"}}
        self.ray.init(**kwargs)

    def execute(
        self, runs: list[dict[str, Any]], task: Callable[[dict[str, Any]], Any] = execute_run
    ) -> Iterator[Event]:
        """Submit ``runs`` (``task(run)`` each) as tasks, as many at a time as the cluster has CPUs;
        yield events."""
        self._init()
        remote = self.ray.remote(num_cpus=1, max_retries=MAX_WORKER_DEATHS - 1)(task)
        capacity = max(1, int(self.ray.cluster_resources().get("CPU", 1)))
        queue = deque(runs)
        pending: dict[Any, dict[str, Any]] = {}
        try:
            while queue or pending:
                while queue and len(pending) < capacity:
                    run = queue.popleft()
                    pending[remote.remote(run)] = run
                    yield "started", run["run_id"]
                ready, _ = self.ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    run = pending.pop(ref)
                    try:
                        yield "finished", self.ray.get(ref)
                    except Exception as exc:  # a lost worker or node: the run failed, the study goes on
                        yield "finished", {"run_id": run["run_id"], "status": "failed", "error": repr(exc)}
        finally:
            for ref in pending:
                with contextlib.suppress(Exception):
                    self.ray.cancel(ref, force=True)

    def shutdown(self) -> None:
        """Leave the cluster (a local Ray is stopped)."""
        if self.ray.is_initialized():
            self.ray.shutdown()
