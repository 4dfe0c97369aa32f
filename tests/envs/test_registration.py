"""Environment ids are checked (and registered where rlsurgery knows how) before any run."""

from __future__ import annotations

import importlib.util
import sys

import gymnasium as gym
import pytest

from rlsurgery.core.errors import EnvironmentNotAvailableError
from rlsurgery.envs import ensure_registered, require_extra


def test_known_ids_pass_and_unknown_ids_suggest_close_ones():
    ensure_registered("CartPole-v1")
    with pytest.raises(EnvironmentNotAvailableError, match=r"'Acrobot-v2'.*did you mean 'Acrobot-v1'"):
        ensure_registered("Acrobot-v2")


def test_module_prefix_imports_the_module_that_registers_the_env(monkeypatch):
    env_id = "rlsurgery-test/CrashingCartPole-v0"
    monkeypatch.delitem(gym.registry, env_id, raising=False)
    monkeypatch.delitem(sys.modules, "tests.bench.crash_env", raising=False)  # as in a fresh worker
    ensure_registered(f"tests.bench.crash_env:{env_id}")
    assert env_id in gym.registry
    with pytest.raises(EnvironmentNotAvailableError, match="cannot import 'no_such_module'"):
        ensure_registered("no_such_module:Thing-v0")


def test_missing_extra_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EnvironmentNotAvailableError, match=r"pip install 'rlsurgery\[minatar\]'"):
        require_extra("minatar", "MinAtar/Breakout-v1")
    with pytest.raises(EnvironmentNotAvailableError, match="unknown extra 'atari'"):
        require_extra("atari", "Pong-v5")


def test_minatar_ids_are_registered_on_demand():
    pytest.importorskip("minatar", reason="the 'minatar' extra is not installed")
    ensure_registered("MinAtar/Breakout-v1")
    env = gym.make("MinAtar/Breakout-v1", max_episode_steps=100)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (10, 10, 4) and env.action_space.n == 3
