"""Shared fixtures: one torch thread per test process, small agent settings."""

from __future__ import annotations

import pytest
import torch as th

from tests.helpers import TINY

th.set_num_threads(1)


@pytest.fixture
def tiny_kwargs() -> dict:
    """Fresh copy of the small DQN settings."""
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY.items()}
