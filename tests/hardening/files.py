"""What the hardening tests share: run the CLI capturing its exit code and output, and a digest
of every file under a folder (to show that a refused command left the disk as it was)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from rlsurgery.cli import main


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> CliResult:
    """``rlsurgery ARGS`` in this process: its exit code (``SystemExit`` included) and output."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code if isinstance(exc.code, int) else 2
    captured = capsys.readouterr()
    return CliResult(int(code), captured.out, captured.err)


def folder_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, by relative path (empty if the folder does not exist)."""
    folder = Path(folder)
    if folder.is_file():
        return {folder.name: hashlib.sha256(folder.read_bytes()).hexdigest()}
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def assert_refused(result: CliResult, *names: str) -> None:
    """Exit code 2, one line on stderr naming each of ``names``, no traceback."""
    assert result.code == 2, (result.code, result.err)
    assert "Traceback" not in result.err, result.err
    for name in names:
        assert name in result.err, (name, result.err)
