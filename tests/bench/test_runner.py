"""Running studies in the local process pool: every run stored exactly once, crashes stored as
failed while the rest go on, and resume after SIGKILL on a worker or on the driver."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from rlsurgery.bench.runner import run_study
from rlsurgery.bench.store import ResultStore
from rlsurgery.bench.study import load_study
from tests.bench.study_helpers import write_tiny_study

ROOT = Path(__file__).resolve().parents[2]


def _rows(folder: Path, query: str) -> list[tuple]:
    with sqlite3.connect(folder / "study.db", timeout=30) as conn:
        return conn.execute(query).fetchall()


def _count(folder: Path, status: str) -> int:
    """Runs of ``status`` in the study store (0 while the store is being created)."""
    try:
        return _rows(folder, f"SELECT COUNT(*) FROM runs WHERE status = '{status}'")[0][0]
    except sqlite3.OperationalError:
        return 0


def _compare(study: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rlsurgery",
            "compare",
            str(study),
            "--out",
            str(out),
            "--workers",
            "2",
            "--no-progress",
            "--reps",
            "50",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_interruptible,
    )


def _interruptible() -> None:
    """In the child: SIGINT handled and not blocked, as in a terminal. The test process may carry an
    ignored or blocked SIGINT (its worker's state), which a child would otherwise inherit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _wait_for(predicate, timeout: float = 240.0, proc: subprocess.Popen | None = None) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the study ended early:\n{proc.stdout.read()}")
        time.sleep(0.2)
    raise AssertionError("timed out")


def _worker_pids(parent: int) -> list[int]:
    """Pool workers of ``parent`` (spawned processes; the resource tracker excluded)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and "spawn_main" in cmdline:
            pids.append(int(entry.name))
    return pids


def _alive(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _assert_every_run_once(folder: Path, expected: int) -> None:
    runs = _rows(folder, "SELECT run_id, status FROM runs")
    assert len(runs) == expected and {s for _, s in runs} == {"done"}, runs
    per_run = _rows(folder, "SELECT run_id, COUNT(*), COUNT(DISTINCT step) FROM evals GROUP BY run_id")
    assert len(per_run) == expected and all(n == distinct for _, n, distinct in per_run)


def test_study_stores_each_run_and_its_curves(tmp_path):
    spec = load_study(write_tiny_study(tmp_path, seeds=2))
    folder = run_study(spec, tmp_path / "out", workers=2, progress=False, report=False)
    with ResultStore(folder) as store:
        results = store.results()
    assert results.runs["status"].tolist() == ["done", "done"]
    # greedy evaluations at eval_freq (300) and at the end (600), on a separate env
    assert results.evals.groupby("run_id")["step"].apply(list).tolist() == [[300, 600], [300, 600]]
    assert (results.runs["steps"] == 600).all() and results.runs["final_score"].notna().all()
    final_eval = results.evals[results.evals["step"] == 600].set_index("run_id")["mean_return"]
    assert final_eval.to_dict() == results.runs.set_index("run_id")["final_score"].to_dict()
    assert len(results.episodes) > 0 and results.episodes["step"].max() <= 600
    # running the same study again redoes nothing
    before = _rows(folder, "SELECT run_id, finished_at FROM runs ORDER BY run_id")
    run_study(spec, folder, workers=2, progress=False, report=False)
    assert _rows(folder, "SELECT run_id, finished_at FROM runs ORDER BY run_id") == before


def test_a_crashing_run_is_stored_as_failed_and_the_rest_go_on(tmp_path):
    study = write_tiny_study(tmp_path, seeds=2, steps=400)
    study.write_text(
        study.read_text().replace(
            "envs: [CartPole-v1]", "envs: ['tests.bench.crash_env:rlsurgery-test/CrashingCartPole-v0']"
        )
    )
    spec = load_study(study)
    folder = run_study(spec, tmp_path / "out", workers=2, progress=False, report=False)
    status = dict(_rows(folder, "SELECT seed, status FROM runs"))
    assert status == {0: "done", 1: "failed"}
    (error,) = _rows(folder, "SELECT error FROM runs WHERE seed = 1")[0]
    assert "Traceback" in error and "simulated crash of an odd-seeded run" in error


def test_resume_after_sigkill_on_the_driver(tmp_path):
    study = write_tiny_study(tmp_path, seeds=4, steps=3000)
    out = tmp_path / "out"
    proc = _compare(study, out)
    _wait_for(
        lambda: (out / "study.db").exists() and _count(out, "done") >= 1,
        proc=proc,
    )
    workers = _worker_pids(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished_before = dict(_rows(out, "SELECT run_id, finished_at FROM runs WHERE status = 'done'"))
    assert 1 <= len(finished_before) < 4
    # the workers die with their driver (no orphans training on)
    _wait_for(lambda: not any(_alive(pid) for pid in workers), timeout=30)
    resumed = _compare(study, out)
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output
    assert f"{len(finished_before)} of 4 runs already done" in output
    _assert_every_run_once(out, 4)
    after = dict(_rows(out, "SELECT run_id, finished_at FROM runs"))
    assert all(after[run_id] == t for run_id, t in finished_before.items())  # not redone
    assert (out / "report.html").is_file()


def test_study_survives_sigkill_on_a_worker(tmp_path):
    study = write_tiny_study(tmp_path, seeds=3, steps=3000)
    out = tmp_path / "out"
    proc = _compare(study, out)
    _wait_for(
        lambda: (
            (out / "study.db").exists() and _count(out, "running") >= 1 and len(_worker_pids(proc.pid)) == 2
        ),
        proc=proc,
    )
    os.kill(_worker_pids(proc.pid)[0], signal.SIGKILL)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    _assert_every_run_once(out, 3)
    attempts = [a for (a,) in _rows(out, "SELECT attempts FROM runs")]
    assert max(attempts) == 2  # the killed runs were done again, in a fresh pool


def test_ctrl_c_stops_cleanly_and_leaves_the_study_resumable(tmp_path):
    study = write_tiny_study(tmp_path, seeds=3, steps=3000)
    out = tmp_path / "out"
    proc = _compare(study, out)
    # interrupt mid-study: runs in flight and one still waiting (under heavy machine load, a check on
    # "running" alone could fire when the last run is about to finish)
    _wait_for(
        lambda: (out / "study.db").exists() and _count(out, "running") >= 1 and _count(out, "pending") >= 1,
        proc=proc,
    )
    workers = _worker_pids(proc.pid)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert "rerun the same command to resume" in output
    assert _count(out, "running") == 0  # interrupted runs went back to pending
    assert _count(out, "pending") + _count(out, "done") == 3
    _wait_for(lambda: not any(_alive(pid) for pid in workers), timeout=30)
