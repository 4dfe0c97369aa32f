"""Project hygiene: generated docs are current, lint and format pass, README and CI agree."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rlsurgery import catalog
from rlsurgery.docs import load_costs, surgeries_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_surgeries_doc_is_current():
    current = (ROOT / "docs" / "surgeries.md").read_text(encoding="utf-8")
    assert current == surgeries_markdown(), "regenerate: rlsurgery catalog --markdown -o docs/surgeries.md"


#: above this ratio to the plain agent a surgery must say where its time goes (issue 21)
COSTLY = 1.5


def test_every_costly_surgery_says_why_in_its_docstring():
    costs = load_costs()
    costly = {k: c["ratio"] for k, c in costs.items() if c.get("ratio", 0) > COSTLY}
    assert costly, "the cost summary has no key above 1.5×: is rlsurgery/data/surgery_costs.json there?"
    silent = [k for k in costly if not catalog.get(k).surgery.cost_note]
    assert not silent, f"measured above {COSTLY}× the plain agent with no cost_note: {silent}"
    for key in costly:
        assert f"Cost: {catalog.get(key).surgery.cost_note}" in catalog.get(key).surgery.__doc__


def _ruff() -> list[str]:
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if exe is None:
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    return [exe]


def test_ruff_lint():
    result = subprocess.run([*_ruff(), "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format():
    result = subprocess.run([*_ruff(), "format", "--check", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_has_exactly_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    setup = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```(?:bash|sh)\n(.*?)```", setup, flags=re.S)
    assert len(commands) == 2, "the set-up section gives exactly two commands"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert commands[1].strip() in ci
    assert "torch==2.13.0" in commands[0] and "torch==2.13.0" in commands[1]


def test_readme_custom_surgery_example_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = next(
        b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "class ClippedTarget" in b
    )
    namespace: dict = {}
    exec(
        compile(
            block.replace('"CartPole-v1",', '"CartPole-v1", learning_starts=20, buffer_size=200,'),
            "README",
            "exec",
        ),
        namespace,
    )
    model = namespace["model"].learn(100)
    assert [s.key for s in model.surgeries] == ["clipped_target", "double_q_learning"]
    assert model._n_updates > 0


def test_readme_exploration_example_builds():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "SurgicalPPO(" in b)
    namespace: dict = {}
    exec(compile(block, "README", "exec"), namespace)
    assert [s.key for s in namespace["model"].surgeries][-1] == "boltzmann_exploration"


def test_readme_aux_loss_example_runs_and_logs_its_term():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "class CriticL2" in b)
    small = block.replace('"Pendulum-v1",', '"Pendulum-v1", learning_starts=50, batch_size=16,').replace(
        "learn(1_000)", "learn(80)"
    )
    namespace: dict = {}
    exec(compile(small, "README", "exec"), namespace)
    model = namespace["model"]
    assert [s.key for s in model.surgeries] == ["critic_l2"]
    assert model.logger.name_to_value["train/aux/critic_l2"] > 0  # logged, not yet dumped at 80 steps
