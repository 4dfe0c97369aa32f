"""Visit counts over observations: hashing states to integer codes, counting codes.

A state is mapped to a code by one of (Tang et al. 2017, https://arxiv.org/abs/1611.04717
for SimHash)::

    exact    code = hash of the observation's bytes            (discrete or small state spaces)
    grid     code = the cell of a uniform grid over the Box bounds, ``bins`` cells per dimension
    simhash  code = bits of sgn(A · x),  A ∈ R^{k×D},  A_ij ~ N(0, 1)   (k ≤ 62 bits)

``auto`` picks exact for discrete spaces, grid for a Box with finite bounds and at most 8
dimensions (e.g. MountainCar), SimHash otherwise. Counts live in a Python dict and are
saved as tensors in the module's extra state, so they survive ``save``/``load``.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import numpy as np
import torch as th
from gymnasium import spaces
from torch import nn

HashKind = Literal["auto", "exact", "grid", "simhash"]


def resolve_hash(kind: str, space: spaces.Space) -> str:
    """The concrete hash for ``kind`` (``auto`` decided by the observation space)."""
    if kind != "auto":
        return kind
    if isinstance(space, (spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)):
        return "exact"
    if isinstance(space, spaces.Box) and np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high)):
        return "grid" if int(np.prod(space.shape)) <= 8 else "simhash"
    return "simhash"


class StateHasher(nn.Module):
    """Maps a batch of observations to int64 codes.

    :param observation_space: the env's observation space
    :param kind: ``auto``, ``exact``, ``grid`` or ``simhash``
    :param bits: SimHash code length k
    :param bins: grid cells per dimension
    :param seed: seed of the SimHash projection
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        kind: str = "auto",
        bits: int = 32,
        bins: int = 20,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.kind = resolve_hash(kind, observation_space)
        if self.kind == "grid":
            if not isinstance(observation_space, spaces.Box) or not (
                np.all(np.isfinite(observation_space.low)) and np.all(np.isfinite(observation_space.high))
            ):
                raise ValueError("hash 'grid' needs a Box observation space with finite bounds")
            self.register_buffer("low", th.as_tensor(observation_space.low, dtype=th.float64).flatten())
            self.register_buffer("high", th.as_tensor(observation_space.high, dtype=th.float64).flatten())
        self.bins = bins
        dim = int(np.prod(observation_space.shape)) if observation_space.shape else 1
        generator = th.Generator().manual_seed(seed)
        self.register_buffer("projection", th.randn(bits, dim, generator=generator, dtype=th.float64))
        self.register_buffer("powers", th.tensor([1 << i for i in range(bits)], dtype=th.int64))

    def codes(self, obs: np.ndarray) -> np.ndarray:
        """Integer codes, shape (B,), for a batch of observations."""
        batch = np.asarray(obs)
        flat = batch.reshape(batch.shape[0], -1)
        if self.kind == "exact":
            return np.array(
                [
                    int.from_bytes(
                        hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little", signed=True
                    )
                    for row in flat
                ],
                dtype=np.int64,
            )
        x = th.as_tensor(flat, dtype=th.float64)
        if self.kind == "grid":
            unit = (x - self.low) / (self.high - self.low)
            cells = (unit * self.bins).floor().clamp(0, self.bins - 1).long()
            scale = self.bins ** th.arange(cells.shape[1], dtype=th.int64)
            return (cells * scale).sum(1).numpy()
        signs = (x @ self.projection.T > 0).long()
        return (signs * self.powers).sum(1).numpy()


class VisitCounts(nn.Module):
    """N(code) for state codes, and optionally N(code, a) for ``n_actions`` discrete actions."""

    def __init__(self, n_actions: int | None = None) -> None:
        super().__init__()
        self.n_actions = n_actions
        self.table: dict[int, np.ndarray] = {}

    def _row(self, code: int) -> np.ndarray:
        row = self.table.get(code)
        if row is None:
            row = self.table[code] = np.zeros(1 + (self.n_actions or 0), dtype=np.int64)
        return row

    def add(self, codes: np.ndarray, actions: np.ndarray | None = None) -> None:
        """Count one visit of each code (and of each (code, action) pair when actions are given)."""
        for i, code in enumerate(codes):
            row = self._row(int(code))
            row[0] += 1
            if actions is not None:
                row[1 + int(actions[i])] += 1

    def state_counts(self, codes: np.ndarray) -> np.ndarray:
        """N(s) for each code, shape (B,)."""
        return np.array([self.table[int(c)][0] if int(c) in self.table else 0 for c in codes], dtype=np.int64)

    def action_counts(self, codes: np.ndarray) -> np.ndarray:
        """N(s, a) for each code and every action, shape (B, A)."""
        assert self.n_actions is not None, "counts were created without actions"
        zeros = np.zeros(self.n_actions, dtype=np.int64)
        return np.stack([self.table[int(c)][1:] if int(c) in self.table else zeros for c in codes])

    def __len__(self) -> int:
        return len(self.table)

    def get_extra_state(self) -> dict[str, Any]:
        codes = np.fromiter(self.table.keys(), dtype=np.int64, count=len(self.table))
        rows = (
            np.stack(list(self.table.values()))
            if self.table
            else np.zeros((0, 1 + (self.n_actions or 0)), np.int64)
        )
        return {"codes": th.as_tensor(codes), "rows": th.as_tensor(rows)}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        codes, rows = state["codes"].cpu().numpy(), state["rows"].cpu().numpy()  # load may map to a GPU
        self.table = {int(c): np.array(r, dtype=np.int64) for c, r in zip(codes, rows)}
