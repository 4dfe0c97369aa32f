"""Low-rank surgeries' tests, and what they share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch as th


def assert_reload_acts_alike(model, path: Path, observations: th.Tensor):
    """Save ``model`` to ``path``, load it with its class, check its greedy actions on ``observations``
    equal the model's; return the loaded model."""
    model.save(path)
    loaded = type(model).load(path)
    obs = observations.numpy()
    np.testing.assert_array_equal(
        loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0]
    )
    return loaded


def freezes_nothing(agent, parameters) -> int:
    """A broken ``train_only``: reports the parameters it was given as trainable, freezes nothing."""
    return sum(p.numel() for p in parameters)
