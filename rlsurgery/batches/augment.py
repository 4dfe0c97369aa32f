"""Data augmentation and mixing (catalog section 7): mixup for value regression, image augmentations.

Zhang et al. 2018 (mixup, https://arxiv.org/abs/1710.09412) and Wang et al. 2020 (MixReg,
https://arxiv.org/abs/2010.10814); Yun et al. 2019 (CutMix, https://arxiv.org/abs/1905.04899);
Laskin et al. 2020 (RAD, https://arxiv.org/abs/2004.14990); Kostrikov et al. 2021 (DrQ random
shift, https://arxiv.org/abs/2004.13649); Raileanu et al. 2021 (UCB-DrAC,
https://arxiv.org/abs/2006.12862)::

    mixup         λ ~ Beta(α, α), j = a random permutation of the batch:
                  s̃ = λ s + (1 − λ) s_j,  Q̃ = λ Q(s̃, a) + (1 − λ) Q(s̃, a_j),  ỹ = λ y + (1 − λ) y_j
                  (the targets y come from the unmixed next states)
    cutmix        on image observations (and next observations, independently), one of
                  shift:  pad by p pixels (edge values), crop back at a random offset (DrQ)
                  cutout: a random s × s square set to 0
                  cutmix: a random s × s square copied from another sample of the batch
    autoaugment   the augmentation is chosen by a UCB bandit: every ``every`` updates, the arm
                  a = argmax Q_a + c · sqrt(ln N / N_a) (untried arms first), with Q_a the running
                  mean, over a's periods of use, of the mean return of the episodes that ended in
                  the period (UCB-DrAC's selection); a period with no finished episode is not counted.
                  The bandit (Q_a, N_a, the arm in use) is its state, saved with the model

Actions, rewards and dones are never changed; shapes and dtypes are kept. Augmentations act in
the ``augment`` stage of the DQN family and PPO (on the update's batch only; rollouts and
``predict`` see raw observations). ``mixup`` fills DQN's ``estimate`` stage.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.catalog import register
from rlsurgery.core.batch import Batch
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import param
from rlsurgery.core.state import transient
from rlsurgery.core.surgery import Attachment, Surgery
from rlsurgery.nets.step_hooks import record


def random_shift(x: th.Tensor, pad: int) -> th.Tensor:
    """Pad each image by ``pad`` (edge values) and crop back to its size at a random offset."""
    n, _, h, w = x.shape
    padded = F.pad(x.float(), (pad, pad, pad, pad), mode="replicate")
    dx = th.randint(0, 2 * pad + 1, (n,)).tolist()
    dy = th.randint(0, 2 * pad + 1, (n,)).tolist()
    out = th.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])
    return out.to(x.dtype)


def _squares(x: th.Tensor, size: int) -> list[tuple[int, int, int]]:
    n, _, h, w = x.shape
    size = min(size, h, w)
    ys = th.randint(0, h - size + 1, (n,)).tolist()
    xs = th.randint(0, w - size + 1, (n,)).tolist()
    return [(ys[i], xs[i], size) for i in range(n)]


def cutout(x: th.Tensor, size: int) -> th.Tensor:
    """A random ``size`` × ``size`` square of each image set to 0."""
    out = x.clone()
    for i, (y0, x0, s) in enumerate(_squares(x, size)):
        out[i, :, y0 : y0 + s, x0 : x0 + s] = 0
    return out


def cutmix(x: th.Tensor, size: int) -> th.Tensor:
    """A random ``size`` × ``size`` square of each image replaced by the same square of another image."""
    out = x.clone()
    partner = th.randperm(x.shape[0]).tolist()
    for i, (y0, x0, s) in enumerate(_squares(x, size)):
        out[i, :, y0 : y0 + s, x0 : x0 + s] = x[partner[i], :, y0 : y0 + s, x0 : x0 + s]
    return out


AUGMENTATIONS: dict[str, Callable[[th.Tensor, int], th.Tensor]] = {
    "shift": random_shift,
    "cutout": cutout,
    "cutmix": cutmix,
}


def ucb_choice(means: list[float], counts: list[int], c: float) -> int:
    """argmax_a Q_a + c · sqrt(ln N / N_a); an arm never tried is chosen first."""
    for arm, n in enumerate(counts):
        if n == 0:
            return arm
    total = sum(counts)
    scores = [m + c * math.sqrt(math.log(total) / n) for m, n in zip(means, counts)]
    return int(np.argmax(scores))


class ImageAugmentation(Surgery):
    """Shared plumbing: image observations only; augments observations and next observations."""

    attaches_to = (Attachment.LOSS,)
    families = ("dqn", "ppo")
    stages = ("augment",)
    params: Any

    def check_spaces(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        if not (isinstance(observation_space, spaces.Box) and len(observation_space.shape) == 3):
            raise IncompatibleSurgeryError(
                f"{self.key}: needs image observations (a 3-D Box), not {observation_space}"
            )

    def augment_observations(self, agent: BaseAlgorithm, x: th.Tensor) -> th.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must define augment_observations()")

    def augment(self, agent: BaseAlgorithm, batch: Any) -> None:
        batch.observations = self.augment_observations(agent, batch.observations)
        if getattr(batch, "next_observations", None) is not None:
            batch.next_observations = self.augment_observations(agent, batch.next_observations)


@dataclass
class CutMixParams:
    mode: Literal["shift", "cutout", "cutmix"] = param("cutmix", "which augmentation")
    size: int = param(8, "side of the square (cutout, cutmix)", ge=1)
    pad: int = param(4, "padding of the random shift", ge=1, le=64)


@register(proof="tests/batches/test_augment.py::test_image_augmentations_keep_shapes_and_labels")
class CutMix(ImageAugmentation):
    """Augment the update's image observations: random shift (DrQ), cutout, or CutMix patches."""

    key = "cutmix"
    Params = CutMixParams
    params: CutMixParams

    def augment_observations(self, agent: BaseAlgorithm, x: th.Tensor) -> th.Tensor:
        p = self.params
        return AUGMENTATIONS[p.mode](x, p.pad if p.mode == "shift" else p.size)


@dataclass
class AutoAugmentParams:
    arms: list[str] = param(["shift", "cutout", "cutmix"], "augmentations the bandit chooses among")
    every: int = param(100, "updates between two choices", ge=1)
    c: float = param(0.1, "exploration weight of the UCB bonus", ge=0.0)
    size: int = param(8, "side of the square (cutout, cutmix)", ge=1)
    pad: int = param(4, "padding of the random shift", ge=1, le=64)

    def check(self) -> None:
        """Known arms."""
        unknown = [a for a in self.arms if a not in AUGMENTATIONS]
        if unknown or not self.arms:
            raise ValueError(f"'arms' must be among {', '.join(AUGMENTATIONS)} (got {self.arms})")


@dataclass
class BanditState:
    means: list[float] = field(default_factory=list)
    """Q_a: the running mean, over a's periods of use, of their mean episode return (one per arm)"""
    counts: list[int] = field(default_factory=list)
    """N_a: the periods credited to each arm"""
    arm: int = 0
    """the arm in use"""
    updates: int = 0
    """updates augmented so far"""
    seen: dict | None = transient()  # noqa: RUF009
    """the newest episode of ``ep_info_buffer`` already credited, or seen before the first update (not
    saved: SB3 does not save the buffer)"""


@register(proof="tests/batches/test_augment.py::test_autoaugment_follows_the_ucb_choice")
class AutoAugment(ImageAugmentation):
    """A UCB bandit picks the augmentation, rewarded by the training return while each is in use."""

    key = "autoaugment"
    Params = AutoAugmentParams
    params: AutoAugmentParams
    State = BanditState

    def state(self, agent: Any) -> BanditState:
        """The bandit on ``agent`` (a mean and a count per arm from its first use)."""
        state = super().state(agent)
        if not state.counts:
            n = len(self.params.arms)
            state.means, state.counts = [0.0] * n, [0] * n
        return state

    def new_returns(self, agent: BaseAlgorithm) -> list[float]:
        """Returns of the episodes that ended since the last call: those played while the current arm
        was in use (SB3's ``ep_info_buffer`` keeps the last 100 episodes, most of them older)."""
        state = self.state(agent)
        episodes = list(agent.ep_info_buffer)
        start = 0
        for i in range(len(episodes) - 1, -1, -1):
            if episodes[i] is state.seen:
                start = i + 1
                break
        if episodes:
            state.seen = episodes[-1]
        return [float(e["r"]) for e in episodes[start:]]

    def choose(self, agent: BaseAlgorithm) -> None:
        """Credit the current arm with the mean return of the episodes that ended while it was in use,
        then pick the next one."""
        state = self.state(agent)
        returns = self.new_returns(agent)
        if returns:
            n = state.counts[state.arm] + 1
            state.means[state.arm] += (float(np.mean(returns)) - state.means[state.arm]) / n
            state.counts[state.arm] = n
        state.arm = ucb_choice(state.means, state.counts, self.params.c)
        record(agent, "train/autoaugment_arm", state.arm)

    def augment_observations(self, agent: BaseAlgorithm, x: th.Tensor) -> th.Tensor:
        name = self.params.arms[self.state(agent).arm]
        return AUGMENTATIONS[name](x, self.params.pad if name == "shift" else self.params.size)

    def augment(self, agent: BaseAlgorithm, batch: Any) -> None:
        state = self.state(agent)
        if state.updates == 0:
            self.new_returns(agent)  # episodes before the first update were played without any arm
        elif state.updates % self.params.every == 0:
            self.choose(agent)
        state.updates += 1
        super().augment(agent, batch)


@dataclass
class MixupParams:
    alpha: float = param(0.2, "α of the Beta(α, α) mixing weights", gt=0.0)


@dataclass
class MixupState:
    last_mix: tuple[th.Tensor, th.Tensor] | None = transient()
    """(λ, j) of the last update (kept for inspection, not saved)"""


@register(proof="tests/batches/test_augment.py::test_mixup_mixes_inputs_estimates_and_targets")
class Mixup(Surgery):
    """MixReg for the DQN family: mixed observations, estimates and TD targets."""

    key = "mixup"
    attaches_to = (Attachment.LOSS,)
    families = ("dqn",)
    refusals: ClassVar[dict[str, str]] = {
        "sac": "it mixes discrete Q-value estimates; a continuous critic's inputs mix actions too, not built",
        "td3": "it mixes discrete Q-value estimates; a continuous critic's inputs mix actions too, not built",
        "ppo": "it mixes TD targets of a replay batch; on-policy advantages are not mixable that way",
        "a2c": "it mixes TD targets of a replay batch; on-policy advantages are not mixable that way",
    }
    stages = ("estimate",)
    Params = MixupParams
    params: MixupParams
    State = MixupState

    def estimate(self, agent: BaseAlgorithm, batch: Batch) -> None:
        n = batch.observations.shape[0]
        lam = (
            th.distributions.Beta(self.params.alpha, self.params.alpha)
            .sample((n, 1))
            .to(batch.rewards.device)
        )
        perm = th.randperm(n, device=batch.rewards.device)
        obs = batch.observations.float()
        shape = (n,) + (1,) * (obs.dim() - 1)
        mixed = lam.view(shape) * obs + (1 - lam.view(shape)) * obs[perm]
        q_values = agent.q_net(mixed)
        actions = batch.actions.long()
        batch.current = lam * q_values.gather(1, actions) + (1 - lam) * q_values.gather(1, actions[perm])
        batch.target = lam * batch.target + (1 - lam) * batch.target[perm]
        self.state(agent).last_mix = (lam, perm)
