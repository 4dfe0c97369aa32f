"""The result store of a study: one SQLite database (``study.db``, WAL mode) in the study folder.

Tables: ``meta`` (the study specification), ``runs`` (one row per run, keyed by run id:
status, configuration hash, final score, wall time, error traceback), ``evals`` (periodic
greedy evaluations), ``episodes`` (training episode returns) and ``metrics`` (the logger
values a study asks for, e.g. ``train/approx_kl`` at each log dump). A finished run's rows are
written in one transaction, so a run is either stored whole or not at all, and never twice.

A study folder is one whose ``study.db`` is such a store. :func:`check_store` tells one apart
from other files (another SQLite database, random bytes, a damaged store) without writing to
it, and :func:`check_study_folder` refuses, before any run, a folder that a study must not write
into: a file, a folder of other files, or the folder of another study.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from rlsurgery.bench.results import (
    EPISODE_COLUMNS,
    EVAL_COLUMNS,
    METRIC_COLUMNS,
    RUN_COLUMNS,
    TASK_END_COLUMNS,
    TASK_EVAL_COLUMNS,
    StudyResults,
)
from rlsurgery.bench.study import SCORE_KEYS, RunSpec, StudySpec, config_hash
from rlsurgery.core.errors import StudyError

DB_NAME = "study.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    variant TEXT NOT NULL,
    env_id TEXT NOT NULL,
    seed INTEGER NOT NULL,
    config_hash TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    final_score REAL,
    final_std REAL,
    steps INTEGER,
    wall_s REAL,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    host TEXT,
    started_at REAL,
    finished_at REAL
);
CREATE TABLE IF NOT EXISTS evals (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    step INTEGER NOT NULL,
    mean_return REAL NOT NULL,
    std_return REAL NOT NULL,
    returns TEXT NOT NULL,
    PRIMARY KEY (run_id, step)
);
CREATE TABLE IF NOT EXISTS episodes (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    idx INTEGER NOT NULL,
    step INTEGER NOT NULL,
    episode_return REAL NOT NULL,
    length INTEGER NOT NULL,
    PRIMARY KEY (run_id, idx)
);
CREATE TABLE IF NOT EXISTS task_evals (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    step INTEGER NOT NULL,
    task INTEGER NOT NULL,
    mean_return REAL NOT NULL,
    std_return REAL NOT NULL,
    returns TEXT NOT NULL,
    PRIMARY KEY (run_id, step, task)
);
CREATE TABLE IF NOT EXISTS task_ends (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    task INTEGER NOT NULL,
    step INTEGER NOT NULL,
    PRIMARY KEY (run_id, task)
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    idx INTEGER NOT NULL,
    step INTEGER NOT NULL,
    key TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (run_id, idx)
);
"""
# ``metrics.value`` is NULL for a NaN (SQLite stores a NaN as NULL); it reads back as NaN. A NaN loss
# is what a fault-injection study is there to record.
METRICS_TABLE = SCHEMA[SCHEMA.index("CREATE TABLE IF NOT EXISTS metrics") :]


def allow_nan_metrics(conn: sqlite3.Connection) -> None:
    """Rebuild a ``metrics`` table of an older store whose ``value`` column refused NaN (NOT NULL)."""

    def value_not_null() -> bool:
        return any(col[1] == "value" and col[3] for col in conn.execute("PRAGMA table_info(metrics)"))

    if not value_not_null():
        return
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        if value_not_null():  # another process may have rebuilt it meanwhile
            conn.execute("ALTER TABLE metrics RENAME TO metrics_not_null")
            conn.execute(METRICS_TABLE)
            conn.execute("INSERT INTO metrics SELECT * FROM metrics_not_null")
            conn.execute("DROP TABLE metrics_not_null")


STORE_TABLES = ("meta", "runs", "evals", "episodes")
"""The tables every study store has (``metrics`` is added to older stores when they are opened)."""


@contextmanager
def _reading(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection to an existing database file that never creates it; used only to read, so that
    the file is left byte for byte as it was (its WAL side files go when the connection closes)."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=60.0)
    try:
        yield conn
    finally:
        conn.close()


def check_store(path: str | Path) -> None:
    """Refuse a ``study.db`` that is not a readable study store, without writing to it.

    :raises StudyError: ``path`` is missing, not an SQLite database, damaged, or a database without
        the study tables
    """
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"{path.parent} is not a study folder (no {DB_NAME})")
    try:
        with _reading(path) as conn:
            check = [row[0] for row in conn.execute("PRAGMA quick_check").fetchall()]
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise StudyError(f"{path} is not a readable study store ({exc})") from None
    if check != ["ok"]:
        first = " ".join(check[0].split())
        raise StudyError(f"{path} is a damaged study store (SQLite's integrity check: {first})")
    missing = [t for t in STORE_TABLES if t not in tables]
    if missing:
        raise StudyError(
            f"{path} is an SQLite database but not a study store (no {', '.join(missing)} table)"
        )


def stored_spec(path: str | Path) -> StudySpec | None:
    """The study a store holds (None: none registered yet), read without writing to the store."""
    with _reading(Path(path)) as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = 'spec'").fetchone()
    try:
        return None if row is None else StudySpec.from_dict(json.loads(row[0]))
    except (ValueError, KeyError, TypeError) as exc:
        raise StudyError(f"{path}: the stored study cannot be read ({type(exc).__name__}: {exc})") from None


def study_difference(stored: StudySpec, spec: StudySpec) -> str | None:
    """Why ``spec`` is another study than the ``stored`` one (None: the same study).

    The same study has the same name. A study built on the command line (``compare --agents``,
    ``ablate``: :attr:`StudySpec.command_line`) is also its variants and environments, so a run
    with other agents or envs is another study; a study file may run part of itself (``--variant``,
    ``--env``) or grow. Either may add seeds. A study stored before stores recorded how it was
    defined is known by its name only. Runs the two share must also have the same configuration,
    which :meth:`ResultStore.register` checks.
    """
    if stored.name != spec.name:
        return f"the study {stored.name!r}, not {spec.name!r}"
    if stored.command_line is None or not (stored.command_line or spec.command_line):
        return None
    if stored.command_line != spec.command_line:
        how = "on the command line" if stored.command_line else "in a study file"
        return f"the study {stored.name!r} defined {how}"
    for what, old, new in (
        ("of", stored.variant_names, spec.variant_names),
        ("on", [e.label for e in stored.envs], [e.label for e in spec.envs]),
    ):
        if set(old) != set(new):
            return f"the study {stored.name!r} {what} {', '.join(old)}, not {', '.join(new)}"
    return None


def check_study_folder(folder: str | Path, spec: StudySpec) -> None:
    """Refuse a folder ``spec`` must not write into, before any run and without writing to it.

    A missing or empty folder, or the folder of the same study (:func:`study_difference`: a rerun
    resumes it), is fine.

    :raises StudyError: ``folder`` is a file, holds files but no study, holds a store that is
        unreadable or damaged, or holds another study
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise StudyError(f"{folder} is a file, not a study folder; choose another --out")
    if not folder.is_dir():
        return
    if not (folder / DB_NAME).exists():
        if any(folder.iterdir()):
            raise StudyError(
                f"{folder} holds files but no study ({DB_NAME}); choose a new or empty --out folder "
                "(a study writes summary.txt, report.html, tables/ and plots/ into it)"
            )
        return
    check_store(folder / DB_NAME)
    stored = stored_spec(folder / DB_NAME)
    difference = None if stored is None else study_difference(stored, spec)
    if difference is not None:
        raise StudyError(f"{folder} holds {difference}; choose another --out folder for this study")


class ResultStore:
    """Read and write a study folder's ``study.db``.

    :param folder: the study folder (created if missing)
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / DB_NAME
        self.conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(SCHEMA)
        allow_nan_metrics(self.conn)

    @classmethod
    def open_existing(cls, folder: str | Path) -> ResultStore:
        """Open the store of an existing study folder.

        :raises StudyError: there is none, or its ``study.db`` is not a readable study store (then
            nothing is written to it: :func:`check_store`)
        """
        check_store(Path(folder) / DB_NAME)
        return cls(folder)

    def close(self) -> None:
        """Close the database connection."""
        self.conn.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the study -----------------------------------------------------------------------------
    def spec(self) -> StudySpec | None:
        """The stored study specification (``None`` for a new folder)."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'spec'").fetchone()
        return None if row is None else StudySpec.from_dict(json.loads(row[0]))

    def register(self, spec: StudySpec, runs: Iterable[RunSpec]) -> None:
        """Record the study and its runs; runs already stored keep their results.

        :raises StudyError: a stored run (same variant, env, seed) has another configuration
        """
        runs = list(runs)
        rows = self.conn.execute("SELECT run_id, config_hash, config FROM runs")
        stored = {run_id: (stored_hash, json.loads(config)) for run_id, stored_hash, config in rows}
        changed, rehashed = [], []
        for r in runs:
            if r.run_id not in stored or stored[r.run_id][0] == r.config_hash:
                continue
            old = stored[r.run_id][1]
            # a hash written before scores left the hash, or other normalization scores only
            if config_hash(old["variant"], old["env"], old["seed"]) == r.config_hash:
                rehashed.append(r)
            else:
                changed.append(r.run_id)
        if changed:
            raise StudyError(
                f"{self.folder} holds results of {len(changed)} run(s) with another configuration "
                f"(e.g. {changed[0]}); use another --out folder for a changed study"
            )
        previous = self.spec()
        if previous is not None:
            spec = _union(previous, spec)
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(
                "INSERT INTO meta (key, value) VALUES ('spec', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (json.dumps(spec.as_dict()),),
            )
            self.conn.executemany(
                "INSERT OR IGNORE INTO runs (run_id, variant, env_id, seed, config_hash, config) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.run_id,
                        r.variant["name"],
                        r.env.get("name") or r.env["env_id"],
                        r.seed,
                        r.config_hash,
                        json.dumps(r.as_dict()),
                    )
                    for r in runs
                ],
            )
            self.conn.executemany(
                "UPDATE runs SET config_hash = ?, config = ? WHERE run_id = ?",
                [(r.config_hash, json.dumps(r.as_dict()), r.run_id) for r in rehashed],
            )

    # -- runs ----------------------------------------------------------------------------------
    def status_counts(self) -> dict[str, int]:
        """Number of runs per status."""
        return dict(self.conn.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall())

    def run_ids(self, status: str | None = None) -> list[str]:
        """Run ids (optionally of one status), in insertion order."""
        if status is None:
            return [r[0] for r in self.conn.execute("SELECT run_id FROM runs ORDER BY rowid")]
        query = "SELECT run_id FROM runs WHERE status = ? ORDER BY rowid"
        return [r[0] for r in self.conn.execute(query, (status,))]

    def mark_running(self, run_id: str) -> None:
        """A worker started the run."""
        self.conn.execute(
            "UPDATE runs SET status = 'running', attempts = attempts + 1, started_at = ? WHERE run_id = ?",
            (time.time(), run_id),
        )

    def mark_pending(self, run_ids: Iterable[str]) -> None:
        """Runs interrupted before they finished go back to pending (resume redoes them)."""
        self.conn.executemany(
            "UPDATE runs SET status = 'pending' WHERE run_id = ? AND status = 'running'",
            [(r,) for r in run_ids],
        )

    def save_result(self, result: dict[str, Any]) -> None:
        """Store a finished (``done``) or crashed (``failed``) run, all rows in one transaction."""
        run_id = result["run_id"]
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute("DELETE FROM evals WHERE run_id = ?", (run_id,))
            self.conn.execute("DELETE FROM episodes WHERE run_id = ?", (run_id,))
            self.conn.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            self.conn.execute("DELETE FROM task_evals WHERE run_id = ?", (run_id,))
            self.conn.execute("DELETE FROM task_ends WHERE run_id = ?", (run_id,))
            self.conn.execute(
                "UPDATE runs SET status = ?, final_score = ?, final_std = ?, steps = ?, wall_s = ?, "
                "error = ?, host = ?, finished_at = ? WHERE run_id = ?",
                (
                    result["status"],
                    result.get("final_score"),
                    result.get("final_std"),
                    result.get("steps"),
                    result.get("wall_s"),
                    result.get("error"),
                    result.get("host") or socket.gethostname(),
                    time.time(),
                    run_id,
                ),
            )
            self.conn.executemany(
                "INSERT INTO evals (run_id, step, mean_return, std_return, returns) VALUES (?, ?, ?, ?, ?)",
                [
                    (run_id, e["step"], e["mean_return"], e["std_return"], json.dumps(e["returns"]))
                    for e in result.get("evals", [])
                ],
            )
            self.conn.executemany(
                "INSERT INTO episodes (run_id, idx, step, episode_return, length) VALUES (?, ?, ?, ?, ?)",
                [
                    (run_id, i, e["step"], e["return"], e["length"])
                    for i, e in enumerate(result.get("episodes", []))
                ],
            )
            self.conn.executemany(
                "INSERT INTO metrics (run_id, idx, step, key, value) VALUES (?, ?, ?, ?, ?)",
                [
                    (run_id, i, m["step"], m["key"], m["value"])
                    for i, m in enumerate(result.get("metrics", []))
                ],
            )
            self.conn.executemany(
                "INSERT INTO task_evals (run_id, step, task, mean_return, std_return, returns) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        run_id,
                        e["step"],
                        e["task"],
                        e["mean_return"],
                        e["std_return"],
                        json.dumps(e["returns"]),
                    )
                    for e in result.get("task_evals", [])
                ],
            )
            self.conn.executemany(
                "INSERT INTO task_ends (run_id, task, step) VALUES (?, ?, ?)",
                [(run_id, e["task"], e["step"]) for e in result.get("task_ends", [])],
            )

    def todo(self) -> list[RunSpec]:
        """Runs to (re)do: every run not ``done`` (pending, interrupted ``running``, ``failed``)."""
        rows = self.conn.execute("SELECT config FROM runs WHERE status != 'done' ORDER BY rowid").fetchall()
        return [RunSpec(**json.loads(r[0])) for r in rows]

    # -- reading -------------------------------------------------------------------------------
    def run_configs(self) -> dict[str, dict[str, Any]]:
        """Each run's stored configuration (a :class:`~rlsurgery.bench.study.RunSpec` as a dict), by
        run id: its variant, env settings, seed and model path."""
        rows = self.conn.execute("SELECT run_id, config FROM runs ORDER BY rowid").fetchall()
        return {run_id: json.loads(config) for run_id, config in rows}

    def eval_returns(self) -> pd.DataFrame:
        """Every greedy evaluation episode of the finished runs, one row per episode.

        :return: columns ``run_id, variant, env_id, seed, step, episode, episode_return``
            (``episode`` numbers the episodes of one evaluation from 0)
        """
        rows = self.conn.execute(
            "SELECT e.run_id, r.variant, r.env_id, r.seed, e.step, e.returns "
            "FROM evals e JOIN runs r USING (run_id) WHERE r.status = 'done' ORDER BY e.run_id, e.step"
        ).fetchall()
        records = [
            (run_id, variant, env_id, seed, step, episode, float(value))
            for run_id, variant, env_id, seed, step, returns in rows
            for episode, value in enumerate(json.loads(returns))
        ]
        columns = ["run_id", "variant", "env_id", "seed", "step", "episode", "episode_return"]
        return pd.DataFrame.from_records(records, columns=columns)

    def results(self) -> StudyResults:
        """Every stored result as tables (see :mod:`rlsurgery.bench.results`)."""
        spec = self.spec()
        if spec is None:
            raise StudyError(f"{self.folder}: the study store holds no study yet")
        runs = pd.read_sql_query(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs ORDER BY rowid", self.conn)
        evals = pd.read_sql_query(
            "SELECT e.run_id, r.variant, r.env_id, r.seed, e.step, e.mean_return "
            "FROM evals e JOIN runs r USING (run_id) WHERE r.status = 'done' ORDER BY e.run_id, e.step",
            self.conn,
        )
        episodes = pd.read_sql_query(
            "SELECT p.run_id, r.variant, r.env_id, r.seed, p.step, p.episode_return "
            "FROM episodes p JOIN runs r USING (run_id) WHERE r.status = 'done' ORDER BY p.run_id, p.idx",
            self.conn,
        )
        metrics = pd.read_sql_query(
            "SELECT m.run_id, r.variant, r.env_id, r.seed, m.step, m.key, m.value "
            "FROM metrics m JOIN runs r USING (run_id) WHERE r.status = 'done' ORDER BY m.run_id, m.idx",
            self.conn,
        )
        task_evals = pd.read_sql_query(
            "SELECT t.run_id, r.variant, r.seed, t.step, t.task, t.mean_return "
            "FROM task_evals t JOIN runs r USING (run_id) WHERE r.status = 'done' "
            "ORDER BY t.run_id, t.step, t.task",
            self.conn,
        )
        task_ends = pd.read_sql_query(
            "SELECT e.run_id, e.task, e.step FROM task_ends e JOIN runs r USING (run_id) "
            "WHERE r.status = 'done' ORDER BY e.run_id, e.task",
            self.conn,
        )
        return StudyResults(
            name=spec.name,
            description=spec.description,
            variants=spec.variant_names,
            envs={e.label: e.scores for e in [*spec.envs, *spec.tasks]},
            tasks=[t.label for t in spec.tasks],
            reference=spec.reference,
            task_evals=task_evals[TASK_EVAL_COLUMNS],
            task_ends=task_ends[TASK_END_COLUMNS],
            runs=runs,
            evals=evals[EVAL_COLUMNS],
            episodes=episodes[EPISODE_COLUMNS],
            metrics=metrics[METRIC_COLUMNS],
            baseline=spec.baseline,
        )


def _union(old: StudySpec, new: StudySpec) -> StudySpec:
    """The stored study grown by a rerun with more variants, envs or seeds (a task sequence keeps its
    tasks: another sequence is another study)."""

    def trained_on(spec: StudySpec) -> list[dict[str, Any]]:  # a task's scores only normalize
        return [{k: v for k, v in t.as_dict().items() if k not in SCORE_KEYS} for t in spec.tasks]

    if trained_on(old) != trained_on(new):
        raise StudyError(
            "the study folder holds a study with other tasks (or none); a task sequence is a study of its "
            "own: choose another --out"
        )
    variants = {v.name: v for v in old.variants}
    variants.update({v.name: v for v in new.variants})
    envs = {e.label: e for e in old.envs}
    envs.update({e.label: e for e in new.envs})
    seeds = list(dict.fromkeys([*old.seeds, *new.seeds]))
    return StudySpec(
        name=new.name,
        description=new.description or old.description,
        variants=list(variants.values()),
        envs=list(envs.values()),
        seeds=seeds,
        baseline=new.baseline or old.baseline,
        device=new.device,
        save_models=new.save_models,
        metrics=list(dict.fromkeys([*old.metrics, *new.metrics])),
        command_line=new.command_line,
        tasks=list(new.tasks),
        reference=new.reference or old.reference,
    )
