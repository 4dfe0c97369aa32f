"""Measures of a model for the report of an operation: size, latency and greedy return.

:class:`ReportMeter` is what ``rls.operate(..., report=True)`` hands to ``Surgery.operate``
(see :mod:`rlsurgery.core.report` for the fields and their units). Each measure is a plain
function, usable on its own:

* :func:`parameter_counts`: parameters of the online networks, and how many are non-zero with
  pruning masks applied;
* :func:`zip_bytes`: the size of the zip ``model.save`` writes;
* :func:`memory_bytes`: the bytes of the tensors and arrays the model holds (networks, optimizer
  states, replay or rollout buffer, what its surgeries keep);
* :func:`predict_latency_ms`: median wall time of one ``model.predict`` on a batch of
  observations sampled from the observation space;
* the greedy return comes from :func:`rlsurgery.training.evaluate_model` (the evaluation of
  ``rlsurgery evaluate``), so ``return_before`` equals ``evaluate_model(model, env_id, episodes,
  seed=eval_seed)`` on the model before the surgery.

Measuring leaves the model and the global random states (Python, NumPy, torch) as they were, so
an operation with a report gives the same model as one without.
"""

from __future__ import annotations

import contextlib
import random
import statistics
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.core.report import ModelCost
from rlsurgery.envs import ensure_registered
from rlsurgery.nets.data import space_samples as observation_batch
from rlsurgery.nets.layout import online_networks
from rlsurgery.nets.size import weight_bytes
from rlsurgery.training import evaluate_model


def parameter_counts(model: BaseAlgorithm) -> tuple[int, int]:
    """``(parameters, non-zero parameters)`` of the online networks (targets not counted).

    A weight masked by ``torch.nn.utils.prune`` (``weight_orig`` and ``weight_mask``) counts as
    its effective value ``weight_orig * weight_mask``; a parameter shared by two networks counts once.
    """
    seen: set[int] = set()
    total = nonzero = 0
    for net in online_networks(model).values():
        for module in net.modules():
            for name, p in module.named_parameters(recurse=False):
                if id(p) in seen:
                    continue
                seen.add(id(p))
                value = p.detach()
                mask = getattr(module, name.removesuffix("_orig") + "_mask", None)
                if name.endswith("_orig") and isinstance(mask, th.Tensor):
                    value = value * mask
                total += value.numel()
                nonzero += int(th.count_nonzero(value))
    return total, nonzero


def zip_bytes(model: BaseAlgorithm) -> int:
    """Bytes of the zip ``model.save`` writes (saved to a temporary file and measured)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.zip"
        model.save(path)
        return path.stat().st_size


#: attributes that hold the model's environments or logging, not its own state
_NOT_HELD = frozenset({"env", "_vec_normalize_env", "eval_env", "_logger", "_custom_logger"})
#: the packages whose objects :func:`memory_bytes` looks inside (besides Python's containers)
_HOLDERS = ("rlsurgery", "stable_baselines3", "sb3_contrib", "torch")


def memory_bytes(model: BaseAlgorithm) -> int:
    """Bytes of the torch tensors and NumPy arrays reachable from ``model``, each storage once.

    This counts the networks, their gradients and optimizer states, the replay or rollout buffer
    (as allocated: SB3 allocates the whole buffer up front), and what surgeries keep (priorities,
    snapshots, teachers, intrinsic-reward models). Environments and loggers are not counted.
    """
    seen: set[int] = set()
    storages: dict[int, int] = {}
    stack: list[Any] = [model]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, th.Tensor):
            storage = obj.untyped_storage()
            storages[storage.data_ptr() or id(obj)] = storage.nbytes()
            if obj.is_leaf and obj.grad is not None:
                stack.append(obj.grad)
        elif isinstance(obj, np.ndarray):
            root = obj
            while isinstance(root.base, np.ndarray):
                root = root.base
            storages[id(root)] = root.nbytes
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)) or type(obj).__name__ == "deque":
            stack.extend(obj)
        elif type(obj).__module__.startswith(_HOLDERS) and hasattr(obj, "__dict__"):
            stack.extend(v for k, v in vars(obj).items() if k not in _NOT_HELD)
    return sum(storages.values())


def predict_latency_ms(
    model: BaseAlgorithm, batch_size: int, repeats: int = 20, warmup: int = 3, seed: int = 0
) -> float:
    """Median wall time, in milliseconds, of one ``model.predict(obs, deterministic=True)`` on
    ``batch_size`` observations sampled from the observation space, after ``warmup`` calls."""
    obs = observation_batch(model.observation_space, batch_size, seed)
    for _ in range(warmup):
        model.predict(obs, deterministic=True)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(obs, deterministic=True)
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def onnx_latency_ms(
    model: BaseAlgorithm,
    batch_sizes: tuple[int, ...] = (1, 256),
    repeats: int = 20,
    warmup: int = 3,
    seed: int = 0,
) -> dict[int, float] | None:
    """Median wall time, in milliseconds, of one ONNX Runtime run (one thread) of the model's exported
    greedy policy (:func:`rlsurgery.export.export`) on each batch size of observations sampled from
    the observation space; ``None`` where the model cannot be exported (said in a warning)."""
    from rlsurgery.export import OnnxPolicy, export

    with tempfile.TemporaryDirectory() as folder:
        try:
            policy = OnnxPolicy(export(model, Path(folder) / "policy.onnx"))
        except Exception as exc:  # a layer the exporter cannot trace: no ONNX latency, the rest stands
            warnings.warn(f"ONNX Runtime latency not measured: {type(exc).__name__}: {exc}", stacklevel=2)
            return None
        latencies = {}
        for batch_size in batch_sizes:
            obs = observation_batch(model.observation_space, batch_size, seed)
            for _ in range(warmup):
                policy.run(obs)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                policy.run(obs)
                times.append(time.perf_counter() - start)
            latencies[batch_size] = 1000.0 * statistics.median(times)
    return latencies


@contextlib.contextmanager
def random_states_kept() -> Iterator[None]:
    """Restore the Python, NumPy and torch (CPU) random states on exit."""
    py, np_state = random.getstate(), np.random.get_state()
    with th.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(np_state)


@dataclass
class ReportMeter:
    """Measures models for the report of an operation (see :mod:`rlsurgery.core.report`).

    :param env_id: Gymnasium id the returns are measured on
    :param episodes: greedy episodes per return measurement
    :param eval_seed: seed of the evaluation env (and of the observations timed)
    :param env_kwargs: the env's constructor arguments (as in training)
    :param latency_repeats: timed ``predict`` calls per batch size (the median is kept)
    :param onnx: also time the exported policy in ONNX Runtime (``ort_latency_ms_b1`` / ``_b256``)
    """

    env_id: str
    episodes: int = 10
    eval_seed: int = 0
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    latency_repeats: int = 20
    onnx: bool = False

    def measure(self, model: BaseAlgorithm) -> ModelCost:
        """Return first (before ``predict`` is timed), then size and latency."""
        ensure_registered(self.env_id)
        with random_states_kept():
            returns = evaluate_model(
                model, self.env_id, episodes=self.episodes, seed=self.eval_seed, env_kwargs=self.env_kwargs
            )
            params, nonzero = parameter_counts(model)
            ort = (
                onnx_latency_ms(model, (1, 256), self.latency_repeats, seed=self.eval_seed)
                if self.onnx
                else None
            )
            return ModelCost(
                params=params,
                nonzero_params=nonzero,
                weight_bytes=weight_bytes(model),
                bytes=zip_bytes(model),
                latency_ms_b1=predict_latency_ms(model, 1, self.latency_repeats, seed=self.eval_seed),
                latency_ms_b256=predict_latency_ms(model, 256, self.latency_repeats, seed=self.eval_seed),
                return_mean=returns["mean_return"],
                return_std=returns["std_return"],
                ort_latency_ms_b1=None if ort is None else ort[1],
                ort_latency_ms_b256=None if ort is None else ort[256],
            )
