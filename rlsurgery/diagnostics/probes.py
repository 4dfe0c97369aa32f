"""Loss probes (catalog section 29): the learning-rate range test and a 2-D slice of the loss landscape.

Smith 2017 (learning-rate range test, https://arxiv.org/abs/1506.01186); Li et al. 2018 (filter-
normalised loss landscapes, https://arxiv.org/abs/1712.09913)::

    learning_rate_finder           η_i = η_min · (η_max / η_min)^(i / (N − 1)), one update each on the
                                   agent's own batches; loss smoothed by an EMA with bias correction,
                                   a_i = β a_{i−1} + (1 − β) l_i (a_{−1} = 0), L_i = a_i / (1 − β^(i+1));
                                   stop when L_i exceeds its best by 3× the best's size (4× a positive
                                   best; actor and PPO losses can be negative); suggested η = the rate of
                                   the steepest descent of L (d L / d log η most negative)
    loss_landscape_visualization   L(θ + α d₁ + β d₂) on a grid of (α, β) ∈ [−s, s]², one fixed batch;
                                   d₁, d₂ Gaussian, each row of a weight matrix (filter) rescaled to the
                                   norm of that row of θ; biases and 1-D parameters not moved

Both run on a trained agent (``rls.operate`` / ``rlsurgery operate``, or ``at_step`` during
training) with its own loss (any surgical agent; ``role`` picks the optimizer on SAC and TD3,
``critic`` by default; on TRPO the optimizer moves the value function only), put the parameters
and optimizer state back
exactly as they were, keep the curve in their state's ``result``,
and write a PNG when ``png`` is set. They are recorded in the provenance log.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.catalog import register
from rlsurgery.core.params import MAX_BATCH, check_order, param
from rlsurgery.core.state import ResultState
from rlsurgery.core.surgery import Attachment, Surgery
from rlsurgery.nets.loss import LOSS_FAMILIES, check_role, fixed_batch_loss, loss_on_batch, training_batches
from rlsurgery.nets.step_hooks import optimizers_by_role

ROLE_DOC = "optimizer role whose loss is probed: policy, or critic / actor on SAC and TD3 (empty: the first)"


class LossProbe(Surgery):
    """Shared plumbing: runs on a trained agent, restores it exactly, records itself."""

    attaches_to = (Attachment.POST_TRAINING,)
    families = LOSS_FAMILIES
    State: ClassVar[type | None] = ResultState
    family_notes: ClassVar[dict[str, str]] = {
        "sac": "the critics' loss, or the actor's with role=actor",
        "td3": "the critics' loss, or the actor's with role=actor",
        "trpo": "critic only: the value-function loss (the policy moves by a line search)",
    }
    operates_in_place = True
    params: Any

    def probe(self, agent: BaseAlgorithm) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define probe()")

    def check_operable(self, model: BaseAlgorithm, env_id: str | None) -> None:
        super().check_operable(model, env_id)
        check_role(model, self.key, self.params.role)

    def transform(self, model: BaseAlgorithm, env_id: str | None) -> BaseAlgorithm:
        """Probe ``model`` (its parameters and optimizer state are restored afterwards)."""
        policy_state = copy.deepcopy(model.policy.state_dict())
        optimizers = optimizers_by_role(model)
        optimizer_states = {role: copy.deepcopy(o.state_dict()) for role, o in optimizers.items()}
        modes = {m: m.training for m in model.policy.modules()}
        try:
            self.probe(model)
        finally:
            model.policy.load_state_dict(policy_state)
            for role, optimizer in optimizers.items():
                optimizer.load_state_dict(optimizer_states[role])
            for module, mode in modes.items():
                module.training = mode
        return model


@dataclass
class FinderParams:
    lr_min: float = param(1e-6, "η_min: first rate of the sweep", gt=0.0)
    lr_max: float = param(1.0, "η_max: last rate of the sweep", gt=0.0)
    steps: int = param(100, "N: updates of the sweep", ge=5)
    batch_size: int = param(64, "batch size of each update", ge=2, le=MAX_BATCH)
    smoothing: float = param(0.9, "EMA factor of the loss curve", ge=0.0, lt=1.0)
    png: str = param("", "write the loss-vs-rate plot to this PNG (empty: no plot)")
    role: str = param("", ROLE_DOC)

    def check(self) -> None:
        """η_min < η_max."""
        check_order(self, "lr_min", "lr_max")


def suggest_lr(lrs: list[float], losses: list[float]) -> float:
    """The rate where the smoothed loss falls fastest per unit of log η."""
    if len(lrs) < 3:
        return lrs[0]
    slopes = np.gradient(np.asarray(losses), np.log(np.asarray(lrs)))
    return float(lrs[int(np.argmin(slopes))])


@register(proof="tests/diagnostics/test_probes.py::test_lr_finder_sweeps_and_restores")
class LearningRateFinder(LossProbe):
    """Exponential learning-rate sweep on the agent's own data: loss vs rate, and a suggested rate."""

    key = "learning_rate_finder"
    Params = FinderParams
    params: FinderParams

    def probe(self, agent: BaseAlgorithm) -> None:
        p = self.params
        role = check_role(agent, self.key, p.role)
        batches = training_batches(agent, p.batch_size, self.key)
        optimizer = optimizers_by_role(agent)[role]
        max_norm = agent.clip_norm(role)  # type: ignore[attr-defined]
        agent.policy.set_training_mode(True)
        lrs, losses, average, best = [], [], 0.0, math.inf
        for i in range(p.steps):
            lr = p.lr_min * (p.lr_max / p.lr_min) ** (i / (p.steps - 1))
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = loss_on_batch(agent, next(batches), role)
            optimizer.zero_grad()
            loss.backward()
            if max_norm is not None:
                th.nn.utils.clip_grad_norm_(agent.policy.parameters(), max_norm)
            optimizer.step()
            value = float(loss.detach())
            average = p.smoothing * average + (1 - p.smoothing) * value  # EMA from 0 ...
            debiased = average / (1 - p.smoothing ** (i + 1))  # ... and its bias correction
            lrs.append(lr)
            losses.append(debiased)
            best = min(best, debiased)
            if not math.isfinite(debiased) or debiased > best + 3 * abs(best):  # 4× best when best > 0
                break
        result = {"lrs": lrs, "losses": losses, "suggested": suggest_lr(lrs, losses)}
        self.state(agent).result = result
        if p.png:
            _plot(
                p.png,
                lambda ax: (ax.semilogx(lrs, losses), ax.axvline(result["suggested"], color="red")),
                "learning rate",
                "smoothed loss",
                f"suggested {result['suggested']:.2e}",
            )


@dataclass
class LandscapeParams:
    span: float = param(1.0, "s: the grid covers α, β ∈ [−s, s]", gt=0.0)
    resolution: int = param(21, "grid points per axis (resolution² loss evaluations)", ge=3, le=201)
    batch_size: int = param(256, "transitions / samples of the fixed batch", ge=2, le=MAX_BATCH)
    seed: int = param(0, "seed of the directions")
    png: str = param("", "write the contour plot to this PNG (empty: no plot)")
    role: str = param("", ROLE_DOC)


def filter_normalised_direction(params: list[th.Tensor], generator: th.Generator) -> list[th.Tensor]:
    """A Gaussian direction, each row (filter) rescaled to the norm of that row of the parameter;
    1-D parameters (biases, norms) get no component."""
    directions = []
    for p in params:
        if p.dim() <= 1:
            directions.append(th.zeros_like(p))
            continue
        d = th.randn(p.shape, generator=generator).to(p.device, p.dtype)
        rows_d = d.reshape(d.shape[0], -1).norm(dim=1).clamp(min=1e-12)
        rows_p = p.detach().reshape(p.shape[0], -1).norm(dim=1)
        directions.append(d * (rows_p / rows_d).reshape(-1, *([1] * (p.dim() - 1))))
    return directions


@register(proof="tests/diagnostics/test_probes.py::test_loss_landscape_grid_and_restore")
class LossLandscapeVisualization(LossProbe):
    """A filter-normalised 2-D slice of the agent's loss around its current parameters, as a contour PNG."""

    key = "loss_landscape_visualization"
    Params = LandscapeParams
    params: LandscapeParams

    def probe(self, agent: BaseAlgorithm) -> None:
        p = self.params
        role = check_role(agent, self.key, p.role)
        loss_fn = fixed_batch_loss(agent, p.batch_size, self.key, role)
        params = [q for g in optimizers_by_role(agent)[role].param_groups for q in g["params"]]
        generator = th.Generator().manual_seed(p.seed)
        d1, d2 = (
            filter_normalised_direction(params, generator),
            filter_normalised_direction(params, generator),
        )
        origin = [q.detach().clone() for q in params]
        axis = np.linspace(-p.span, p.span, p.resolution)
        grid = np.zeros((p.resolution, p.resolution))
        agent.policy.set_training_mode(False)
        with th.no_grad():
            for i, alpha in enumerate(axis):
                for j, beta in enumerate(axis):
                    for q, o, a, b in zip(params, origin, d1, d2):
                        q.copy_(o + alpha * a + beta * b)
                    grid[j, i] = float(loss_fn())
            for q, o in zip(params, origin):
                q.copy_(o)
        self.state(agent).result = {"alphas": axis.tolist(), "betas": axis.tolist(), "losses": grid.tolist()}
        if p.png:
            _plot(
                p.png,
                lambda ax: ax.contour(axis, axis, grid, levels=20),
                "α (d₁)",
                "β (d₂)",
                "loss landscape",
            )


def _plot(path: str, draw: Any, xlabel: str, ylabel: str, title: str) -> None:
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 4))
    draw(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
