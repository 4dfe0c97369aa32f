"""Run a study: validate it, store it, execute its unfinished runs, write its report.

The same command resumes an interrupted study: runs already ``done`` in the study
folder's store are skipped; runs that were running when the study stopped, and failed
runs, are done again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from rlsurgery.bench.backends import LocalBackend, RayBackend
from rlsurgery.bench.store import ResultStore, check_study_folder
from rlsurgery.bench.study import StudySpec, default_workers
from rlsurgery.core.checks import check_int, check_optional_int
from rlsurgery.core.errors import StudyError
from rlsurgery.core.model_zip import trusted_zips


def make_backend(backend: str, workers: int | None = None, ray_address: str | None = None) -> Any:
    """``local`` (a process pool of ``workers``) or ``ray`` (``ray_address`` or a local Ray).

    :raises StudyError: another backend, or ``workers`` not ``None`` (one per core) or >= 1
    """
    workers = check_optional_int(workers, "workers", 1, error=StudyError)
    if workers is None:
        workers = default_workers()
    if backend == "local":
        return LocalBackend(workers)
    if backend == "ray":
        return RayBackend(address=ray_address, num_cpus=workers)
    raise StudyError(f"backend must be 'local' or 'ray' (got {backend!r})")


def default_study_dir(spec: StudySpec) -> Path:
    """``studies/<name>``."""
    return Path("studies") / spec.name.replace("/", "_")


def run_study(
    spec: StudySpec,
    out: str | Path | None = None,
    *,
    backend: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    progress: bool = True,
    report: bool = True,
    reps: int = 2000,
    console: Console | None = None,
    trust: bool = False,
) -> Path:
    """Run (or resume) ``spec`` in the study folder ``out`` and write its report.

    :param spec: the study
    :param out: study folder (default ``studies/<name>``); holds ``study.db`` and the outputs
    :param backend: ``local`` or ``ray``
    :param workers: local worker processes, or CPUs of a local Ray (default: one per core)
    :param ray_address: address of an existing Ray cluster
    :param progress: show a progress display (runs done / running / failed, ETA)
    :param report: write the report (tables, plots, HTML) when the runs end
    :param reps: bootstrap resamples of the report's confidence intervals
    :param trust: runs may unpickle the model zips their surgeries read (a plain SB3 teacher or
        initialisation source; see ``docs/security.md``); not stored with the study
    :return: the study folder
    :raises StudyError: before any run: a bad setting, a study that does not validate, or a folder
        it must not write into (:func:`~rlsurgery.bench.store.check_study_folder`: a file, a folder
        of other files, another study's folder, an unreadable store)
    """
    console = console or Console(stderr=True, soft_wrap=True)
    workers = check_optional_int(workers, "workers", 1, error=StudyError)
    reps = check_int(reps, "reps", 1, error=StudyError)
    folder = Path(out) if out is not None else default_study_dir(spec)
    check_study_folder(folder, spec)
    with trusted_zips(trust):  # validation builds each agent: its surgeries may read zips
        spec.validate()
    executor = make_backend(backend, workers, ray_address)
    runs = spec.runs(folder)
    with ResultStore(folder) as store:
        store.register(spec, runs)
        if spec.save_models:
            (folder / "models").mkdir(exist_ok=True)
        current = {r.run_id: r for r in runs}  # same configuration as stored (register checks)
        todo = [current[r.run_id] for r in store.todo() if r.run_id in current]
        todo.sort(key=lambda r: -(r.env.get("steps") or 0))  # longest first: better packing
        skipped = len(runs) - len(todo)
        if skipped:
            console.print(f"resuming {folder}: {skipped} of {len(runs)} runs already done")
        if todo:
            _execute(
                store,
                [{**r.as_dict(), **({"trust": True} if trust else {})} for r in todo],
                executor,
                progress,
                console,
            )
    if report:
        write_study_report(folder, reps=reps)
    return folder


def _execute(
    store: ResultStore, runs: list[dict[str, Any]], backend: Any, progress: bool, console: Console
) -> None:
    running: set[str] = set()
    failed = 0
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("running {task.fields[running]}  failed {task.fields[failed]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    events = backend.execute(runs)
    with Progress(*columns, console=console, disable=not progress, transient=False) as bar:
        task = bar.add_task("runs", total=len(runs), running=0, failed=0)
        try:
            for kind, payload in events:
                if kind == "started":
                    store.mark_running(payload)
                    running.add(payload)
                else:
                    store.save_result(payload)
                    running.discard(payload["run_id"])
                    if payload["status"] == "failed":
                        failed += 1
                        first = (payload.get("error") or "").strip().splitlines()[-1:] or [""]
                        console.print(f"[red]run {payload['run_id']} failed:[/red] {first[0]}")
                    bar.advance(task)
                bar.update(task, running=len(running), failed=failed)
        except BaseException:
            events.close()
            store.mark_pending(running)
            console.print(f"interrupted at {time.strftime('%H:%M:%S')}: rerun the same command to resume")
            raise
        finally:
            backend.shutdown()


def write_study_report(folder: str | Path, reps: int = 2000) -> dict[str, Any]:
    """Rebuild every output of a study folder from its store (``rlsurgery report``), with a GIF of
    each variant's best seed per env when the study saved its models
    (:func:`~rlsurgery.bench.rollouts.write_rollout_gifs`: rendered once per model file).

    :raises StudyError: ``reps`` < 1, or ``folder`` has no readable study store (nothing is written)
    """
    from rlsurgery.bench.report import write_report
    from rlsurgery.bench.rollouts import write_rollout_gifs

    reps = check_int(reps, "reps", 1, error=StudyError)
    with ResultStore.open_existing(folder) as store:
        results = store.results()
        configs = store.run_configs()
    rollouts = write_rollout_gifs(folder, results, configs)
    return write_report(results, folder, reps=reps, rollouts=rollouts)
