"""Which stored transitions a replay sample holds: flat indices ``pos * n_envs + env``.

SB3's buffers do not say which transitions they sampled. Per-transition state kept outside the
buffer (bootstrap masks of an ensemble) needs to know, so :func:`sample_with_indices` samples
through the buffer's own ``sample`` and records the positions its ``_get_samples`` receives. The
env column is drawn inside ``_get_samples`` as ``np.random.randint(0, n_envs, size)`` by every SB3
buffer (``ReplayBuffer``, ``DictReplayBuffer``, ``NStepReplayBuffer``); with several envs it is read
by drawing the same numbers from a copy of NumPy's random state, so the samples, and every later
random number, are the ones plain sampling gives.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.buffers import ReplayBuffer


def env_columns(n_envs: int, size: int) -> np.ndarray:
    """The env indices the buffer's next ``np.random.randint(0, n_envs, size)`` will draw, without
    drawing them."""
    if n_envs == 1:
        return np.zeros(size, dtype=np.int64)
    state = np.random.get_state()
    try:
        return np.random.randint(0, n_envs, size=size).astype(np.int64)
    finally:
        np.random.set_state(state)


def sample_with_indices(
    buffer: ReplayBuffer, batch_size: int, env: Any = None
) -> tuple[Any, np.ndarray | None]:
    """``buffer.sample(batch_size, env)`` and the flat indices of its samples (None where the
    buffer samples without going through ``_get_samples``, e.g. hindsight replay).

    The samples' own ``indices`` (prioritized replay) are returned when they have them.
    """
    recorded: list[np.ndarray] = []
    get_samples = buffer._get_samples

    def recording(batch_inds: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        positions = np.asarray(batch_inds, dtype=np.int64).reshape(-1)
        recorded.append(positions * buffer.n_envs + env_columns(buffer.n_envs, positions.size))
        return get_samples(batch_inds, *args, **kwargs)

    buffer._get_samples = recording  # type: ignore[method-assign]
    try:
        data = buffer.sample(batch_size, env=env)
    finally:
        del buffer._get_samples  # the class's method again
    own = getattr(data, "indices", None)
    if own is not None:
        return data, np.asarray(own)
    return data, recorded[0] if len(recorded) == 1 else None
