"""Learning without forgetting: distil the pre-switch model's outputs on the new task's states.

Li & Hoiem 2016, https://arxiv.org/abs/1606.09282. At each task switch the surgery keeps a frozen copy
of the policy (the *teacher*, the model at the end of the finished task); while the new task trains,
the acting network's loss gains, on the states of each training batch (the new task's)::

    α · T² · KL(softmax(o_old / T) ‖ softmax(o / T))     discrete policies (PPO/A2C logits)
    α · ‖o − o_old‖² (mean)                              Q-values (DQN), deterministic actions (SAC/TD3)

with o the acting network's outputs (:meth:`~rlsurgery.nets.layout.NetworkLayout.outputs`). The copy
lives in the agent's ``rls_modules`` and is saved with it; the latest switch's teacher replaces the
previous one (it has learnt from it already).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.catalog import register
from rlsurgery.core.params import param
from rlsurgery.core.surgery import ON_POLICY_FAMILIES, Attachment, Surgery
from rlsurgery.distillation.core import soft_kl
from rlsurgery.nets.layout import layout_of
from rlsurgery.nets.modules import detached_copy
from rlsurgery.runtime.tasks import TaskSwitch

#: the loss roles whose network acts (the distilled outputs are its outputs)
ACTING_ROLES = ("q", "policy", "actor")


@dataclass
class LwFParams:
    weight: float = param(1.0, "α: weight of the distillation term", ge=0.0)
    temperature: float = param(2.0, "T of the softened policies (discrete policies)", gt=0.0)


@dataclass
class LwFState:
    has_teacher: bool = False
    """whether a pre-switch copy exists (``load`` rebuilds it, then its saved weights are loaded)"""


def distillation_term(old: th.Tensor, new: th.Tensor, categorical: bool, temperature: float) -> th.Tensor:
    """T²·KL(softmax(old/T) ‖ softmax(new/T)) for logits, else the mean squared difference."""
    if categorical:
        return temperature**2 * soft_kl(old, new, temperature)
    return F.mse_loss(new, old)


@register(proof="tests/continual/test_continual.py::test_lwf_pulls_the_outputs_towards_the_pre_switch_model")
class LearningWithoutForgetting(Surgery):
    """Keep the pre-switch model and distil its outputs into the agent on the new task's states."""

    key = "learning_without_forgetting"
    attaches_to = (Attachment.LOSS, Attachment.SCHEDULE)
    families = ("dqn", *ON_POLICY_FAMILIES, "sac", "td3")
    stages = ("aux_loss",)
    Params = LwFParams
    params: LwFParams
    State: ClassVar[type | None] = LwFState
    build_order = 95  # after every network surgery: the copy has the final architecture

    def make_teacher(self, agent: BaseAlgorithm) -> th.nn.Module:
        teacher = detached_copy(agent.policy)
        teacher.requires_grad_(False)
        teacher.set_training_mode(False)
        agent.rls_modules[self.key] = teacher
        return teacher

    def modify_networks(self, agent: BaseAlgorithm) -> None:
        if self.state(agent).has_teacher:  # on load: the module the saved weights go into
            self.make_teacher(agent)

    def on_task_switch(self, agent: BaseAlgorithm, switch: TaskSwitch) -> None:
        self.make_teacher(agent).load_state_dict(agent.policy.state_dict())
        self.state(agent).has_teacher = True

    def aux_loss(self, agent: BaseAlgorithm, role: str, batch: Any) -> th.Tensor | None:
        if role not in ACTING_ROLES or self.key not in agent.rls_modules:
            return None
        layout = layout_of(agent)
        discrete = isinstance(agent.action_space, spaces.Discrete)
        obs = batch.observations
        with th.no_grad():
            old = layout.outputs(agent.rls_modules[self.key], obs, discrete)
        new = layout.outputs(agent.policy, obs, discrete)
        categorical = layout.kind == "distribution" and discrete
        return self.params.weight * distillation_term(old, new, categorical, self.params.temperature)
