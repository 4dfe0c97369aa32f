"""Shared fixtures: one torch thread per test process, small agent settings."""

from __future__ import annotations

import pytest
import torch as th

from tests.helpers import TINY

th.set_num_threads(1)


@pytest.fixture(autouse=True)
def cpu_unless_marked_cuda(request, monkeypatch):
    """Tests build agents with device="auto": keep them on the CPU unless marked ``cuda``,
    so the suite behaves the same on a machine with a GPU."""
    if request.node.get_closest_marker("cuda") is None:
        monkeypatch.setattr(th.cuda, "is_available", lambda: False)


@pytest.fixture
def tiny_kwargs() -> dict:
    """Fresh copy of the small DQN settings."""
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY.items()}
