"""Gradient episodic memory: project each update's gradient so it does not raise an old task's loss.

Lopez-Paz & Ranzato 2017 (GEM), https://arxiv.org/abs/1706.08840; Chaudhry et al. 2019 (A-GEM),
https://arxiv.org/abs/1812.00420. At each task switch ``per_task`` transitions of the finished task
are kept (an episodic memory per task). Before every optimizer step, with g the update's gradient
(after clipping) and g_k the gradient of the agent's own loss on a batch of task k's memory::

    GEM    g̃ = argmin_z ½‖z − g‖²  s.t.  ⟨z, g_k⟩ ≥ 0 for every old task k
           solved in the dual: min_{v ≥ 0} ½ vᵀ(GGᵀ)v + (Gg)ᵀv, z = g + Gᵀv (Hildreth's coordinate
           descent, :func:`gem_projection`)
    A-GEM  g_ref: the gradient on a batch drawn from all memories pooled;
           g̃ = g − (⟨g, g_ref⟩ / ‖g_ref‖²) g_ref  if ⟨g, g_ref⟩ < 0, else g

**A-GEM is the default** (``variant=agem``): one extra backward pass per update whatever the number
of tasks, where GEM takes one per old task. On the off-policy agents (DQN family, SAC and TD3: each
of the actor's and the critic's updates is projected on its own loss), whose loss can be evaluated
on stored transitions; ``train/gem_projected`` logs whether the latest update was projected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.catalog import register
from rlsurgery.continual.anchors import TaskMemorySurgery
from rlsurgery.core.params import param
from rlsurgery.core.surgery import Attachment
from rlsurgery.nets.step_hooks import optimizers_by_role, record, trainable_parameters


@dataclass
class GEMParams:
    variant: str = param("agem", "agem (one pooled reference gradient, the default) or gem (one per task)")
    per_task: int = param(256, "transitions kept in the episodic memory of each finished task", ge=1)
    batch_size: int = param(64, "memory transitions per reference gradient", ge=1)

    def check(self) -> None:
        if self.variant not in ("agem", "gem"):
            raise ValueError(f"'variant' must be 'agem' or 'gem' (got {self.variant!r})")


def agem_projection(g: th.Tensor, reference: th.Tensor) -> th.Tensor:
    """A-GEM: remove from g its component against ``reference`` when they conflict."""
    dot = th.dot(g, reference)
    if dot >= 0:
        return g
    return g - dot / th.dot(reference, reference).clamp_min(1e-12) * reference


def gem_projection(g: th.Tensor, memories: th.Tensor, sweeps: int = 200, tol: float = 1e-10) -> th.Tensor:
    """GEM: the closest z to g with ⟨z, g_k⟩ ≥ 0 for each row g_k of ``memories`` (K × P)."""
    if bool((memories @ g >= 0).all()):
        return g
    gram = (memories @ memories.T).double().cpu()  # K × K: a few numbers, solved on the CPU
    linear = (memories @ g).double().cpu()
    v = th.zeros(len(memories), dtype=th.float64)
    for _ in range(sweeps):  # Hildreth: exact minimisation along one dual coordinate at a time
        largest = 0.0
        for k in range(len(v)):
            if gram[k, k] <= 0:
                continue
            new = max(0.0, float(v[k] - (gram[k] @ v + linear[k]) / gram[k, k]))
            largest = max(largest, abs(new - float(v[k])))
            v[k] = new
        if largest < tol:
            break
    return g + (memories.T.double() @ v.to(memories.device)).to(g.dtype)


def _flat(grads: list[th.Tensor | None], parameters: list[th.Tensor]) -> th.Tensor:
    return th.cat(
        [(gr if gr is not None else th.zeros_like(p)).reshape(-1) for gr, p in zip(grads, parameters)]
    )


@register(proof="tests/continual/test_continual.py::test_gem_projection_does_not_raise_any_old_tasks_loss")
class GradientEpisodicMemory(TaskMemorySurgery):
    """Keep an episodic memory per task; project each gradient so no old task's loss goes up."""

    key = "gradient_episodic_memory"
    attaches_to = (Attachment.LOSS, Attachment.SCHEDULE)
    stages = ("before_step",)
    stage_order = 8  # after the loss watchers and SAM: the step's final gradient is projected
    Params = GEMParams
    params: GEMParams
    cost_note = "one extra backward pass per update (A-GEM), or one per old task (GEM)"

    def reference_gradients(self, agent: BaseAlgorithm, role: str, parameters: list[th.Tensor]) -> th.Tensor:
        """One gradient per old task (GEM) or one on the pooled memories (A-GEM), rows of a K × P matrix."""
        state = self.state(agent)
        pools = [np.arange(len(state.task_of))]
        if self.params.variant == "gem":
            pools = [np.flatnonzero(state.task_of == task) for task in np.unique(state.task_of)]
        rows = []
        for pool in pools:
            chosen = pool[np.random.randint(len(pool), size=min(self.params.batch_size, len(pool)))]
            memory_batch = agent.ready_for_loss(state.batch(chosen, agent))  # type: ignore[attr-defined]
            loss = agent.step_loss(role, memory_batch)  # type: ignore[attr-defined]
            rows.append(_flat(list(th.autograd.grad(loss, parameters, allow_unused=True)), parameters))
        return th.stack(rows)

    def before_step(self, agent: BaseAlgorithm, role: str, batch: Any, loss: th.Tensor) -> None:
        if len(self.state(agent).task_of) == 0:
            return
        parameters = trainable_parameters(optimizers_by_role(agent)[role])
        if not parameters:  # the update was dropped (a loss watcher)
            return
        g = _flat([p.grad for p in parameters], parameters)
        memories = self.reference_gradients(agent, role, parameters)
        if self.params.variant == "gem":
            projected = gem_projection(g, memories)
        else:
            projected = agem_projection(g, memories[0])
        record(agent, "train/gem_projected", float(not th.equal(projected, g)))
        offset = 0
        for p in parameters:
            n = p.numel()
            p.grad = projected[offset : offset + n].view_as(p).clone()
            offset += n
