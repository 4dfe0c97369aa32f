"""An append-only JSON-lines results file, shared by the benchmark scripts that are not studies.

One record per line; a record's *key* (a tuple of some of its fields) names the unit of work it
reports, so that a rerun can skip the units already done and an interrupted run loses at most the
unit in progress::

    log = ResultsLog("docs/bench-data/distillation.jsonl", key=("env_id", "seed", "model"))
    if ("CartPole-v1", 0, "teacher") not in log.done():
        log.append({"env_id": "CartPole-v1", "seed": 0, "model": "teacher", "mean_return": 500.0})
    rows = log.rows()
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class ResultsLog:
    """A JSON-lines file of benchmark records, read back and appended to one record at a time.

    :param path: the ``.jsonl`` file (created with its folder on the first append)
    :param key: the fields that identify the unit of work a record reports
    """

    def __init__(self, path: str | Path, key: Sequence[str]) -> None:
        self.path = Path(path)
        self.key = tuple(key)

    def rows(self) -> list[dict[str, Any]]:
        """Every record in the file, in the order written (none if the file does not exist)."""
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def done(self) -> set[tuple]:
        """The keys of the records already written."""
        return {tuple(row[field] for field in self.key) for row in self.rows()}

    def append(self, record: dict[str, Any]) -> None:
        """Write one record as a line and flush it, so that it survives an interruption."""
        missing = [field for field in self.key if field not in record]
        if missing:
            raise KeyError(f"record lacks the key fields {missing} of {self.path}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
