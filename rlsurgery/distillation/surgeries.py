"""Distillation surgeries: a student agent learns to reproduce a teacher's policy.

Rusu et al. 2016 (policy distillation, https://arxiv.org/abs/1511.06295); Ba & Caruana 2014
(logit regression, https://arxiv.org/abs/1312.6184); Hinton et al. 2015 (soft targets,
https://arxiv.org/abs/1503.02531); Romero et al. 2015 (FitNets, https://arxiv.org/abs/1412.6550).
With t the teacher's outputs and s the student's (:func:`~rlsurgery.distillation.core.policy_outputs`)::

    policy_distillation           KL(softmax(t/τ) ‖ softmax(s))      (continuous actions: ‖s − t‖²)
    teacher_student_distillation  ‖s − t‖²   (regress the logits / Q-values / actions)
    soft_target_training          α · CE(s, argmax t) + (1 − α) · τ² · KL(softmax(t/τ) ‖ softmax(s/τ))
    feature_matching              KL(softmax(t) ‖ softmax(s)) + λ · ‖W h_s − h_t‖²  (h: last hidden layer)

Each runs once on a freshly built student (``after_build``), or on a saved teacher with
``rlsurgery operate TEACHER.zip --surgery KEY:net_arch=[32],steps=... -o STUDENT.zip`` /
``rls.operate(teacher, KEY, ...)``, which builds the smaller student of the teacher's
algorithm. What was measured is in ``student.rls_distillation``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn
from torch.nn import functional as F

from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError, ParameterError
from rlsurgery.core.params import param
from rlsurgery.core.surgery import Attachment, Surgery, reject_dict_observations
from rlsurgery.distillation.core import (
    DistillationFields,
    action_agreement,
    collect_states,
    count_parameters,
    discrete_actions,
    distill,
    policy_latent,
    soft_kl,
)
from rlsurgery.policy.imitation import IMITATION_FAMILIES, evaluation_env, load_expert


def soft_target_loss(teacher: th.Tensor, student: th.Tensor, alpha: float, temperature: float) -> th.Tensor:
    """α · CE(s, argmax t) + (1 − α) · τ² · KL(softmax(t/τ) ‖ softmax(s/τ))."""
    hard = F.cross_entropy(student, teacher.argmax(dim=-1))
    return alpha * hard + (1 - alpha) * temperature**2 * soft_kl(teacher, student, temperature)


class DistillationSurgery(Surgery):
    """Shared plumbing: the teacher, the spaces check, the loop, the report, ``operate``."""

    attaches_to = (Attachment.POST_TRAINING,)
    families = IMITATION_FAMILIES
    #: whether the loss needs discrete actions
    needs_discrete = False
    params: Any

    def check_spaces(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        reject_dict_observations(self.key, observation_space)
        if self.needs_discrete and not isinstance(action_space, spaces.Discrete):
            raise IncompatibleSurgeryError(
                f"{self.key}: needs a discrete action space, got {type(action_space).__name__}"
            )

    def validate(self, agent: BaseAlgorithm) -> None:
        super().validate(agent)
        teacher = self.params.teacher
        building = getattr(self, "_teacher_model", None) is None and getattr(agent, "_rls_fresh", False)
        if building and (not teacher or Path(teacher).suffix != ".zip" or not Path(teacher).is_file()):
            raise ParameterError(
                f"{self.key}: parameter 'teacher' must be an existing .zip file (got {teacher!r})"
            )

    # -- the loss (obs, teacher outputs, student outputs) -> scalar
    def loss(self, obs: th.Tensor, teacher_out: th.Tensor, student_out: th.Tensor) -> th.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must define loss()")

    def extra_modules(self, student: BaseAlgorithm, teacher: BaseAlgorithm) -> list[nn.Module]:
        """Modules trained along with the student (none by default)."""
        return []

    def teacher_model(self, agent: BaseAlgorithm) -> BaseAlgorithm:
        """The teacher, checked against the student's spaces."""
        teacher = getattr(self, "_teacher_model", None) or load_expert(self.params.teacher)
        if teacher.observation_space.shape != agent.observation_space.shape or type(
            teacher.action_space
        ) is not type(agent.action_space):
            raise IncompatibleSurgeryError(
                f"{self.key}: the teacher's spaces ({teacher.observation_space}, {teacher.action_space}) "
                f"do not match the student's ({agent.observation_space}, {agent.action_space})"
            )
        return teacher

    def after_build(self, agent: BaseAlgorithm) -> None:
        teacher = self.teacher_model(agent)
        self._teacher = teacher
        env = evaluation_env(agent, self.key)
        extra = self.extra_modules(agent, teacher)
        report = distill(agent, teacher, env, self.loss, self.params, extra)
        held_out = collect_states(agent, env, 1000, self.params.seed + 999_983)
        env.close()
        report.update(
            {
                "surgery": self.key,
                "agreement": action_agreement(agent, teacher, held_out),
                "student_parameters": count_parameters(agent),
                "teacher_parameters": count_parameters(teacher),
            }
        )
        agent.rls_distillation = report  # type: ignore[attr-defined]
        self._teacher = None

    def operate(self, model: BaseAlgorithm, env_id: str | None = None) -> BaseAlgorithm:
        """Distil ``model`` (the teacher) into a new student of its algorithm (``net_arch`` layers)."""
        from rlsurgery.agents import surgical_class_of

        env_id = env_id or getattr(model, "rls_env_id", None)
        if env_id is None:
            raise IncompatibleSurgeryError(
                f"{self.key}: the teacher does not record its environment; pass env_id / --env"
            )
        cls = surgical_class_of(model)
        policy_kwargs = dict(getattr(model, "policy_kwargs", {}) or {})
        if self.params.net_arch is not None:
            policy_kwargs["net_arch"] = list(self.params.net_arch)
        self._teacher_model = model
        try:
            from rlsurgery.envs import ensure_registered

            ensure_registered(env_id)
            student = cls(
                type(model.policy),
                gym.make(env_id, **(getattr(model, "rls_env_kwargs", None) or {})),
                policy_kwargs=policy_kwargs,
                seed=self.params.seed,
                device=model.device,
                surgeries=[self],
            )
        finally:
            self._teacher_model = None
        student.rls_env_id = env_id  # type: ignore[attr-defined]
        return student


@dataclass
class PolicyDistillationParams(DistillationFields):
    temperature: float = param(1.0, "τ of the teacher's softmax (τ < 1 sharpens Q-value teachers)", gt=0.0)


@register(proof="tests/distillation/test_distillation.py::test_student_agrees_with_teacher_at_the_asked_size")
class PolicyDistillation(DistillationSurgery):
    """Compress a policy: KL(softmax(t/τ) ‖ softmax(s)) on the student's own states."""

    key = "policy_distillation"
    Params = PolicyDistillationParams

    def loss(self, obs: th.Tensor, teacher_out: th.Tensor, student_out: th.Tensor) -> th.Tensor:
        """KL to the tempered teacher policy (MSE on actions for continuous spaces)."""
        if teacher_out.shape[-1] != student_out.shape[-1] or not self._discrete:
            return F.mse_loss(student_out, teacher_out)
        target = F.softmax(teacher_out / self.params.temperature, dim=-1)
        return F.kl_div(F.log_softmax(student_out, dim=-1), target, reduction="batchmean")

    def configure(self, agent: BaseAlgorithm) -> None:
        self._discrete = discrete_actions(agent)


@dataclass
class TeacherStudentParams(DistillationFields):
    pass


@register(proof="tests/distillation/test_distillation.py::test_losses_on_crafted_outputs")
class TeacherStudentDistillation(DistillationSurgery):
    """Train a small student to regress the teacher's outputs (logits, Q-values or actions)."""

    key = "teacher_student_distillation"
    Params = TeacherStudentParams

    def loss(self, obs: th.Tensor, teacher_out: th.Tensor, student_out: th.Tensor) -> th.Tensor:
        """‖s − t‖²."""
        return F.mse_loss(student_out, teacher_out)


@dataclass
class SoftTargetParams(DistillationFields):
    alpha: float = param(0.5, "α, weight of the hard-label cross-entropy", ge=0.0, le=1.0)
    temperature: float = param(2.0, "τ of both softmaxes in the soft term", gt=0.0)


@register(proof="tests/distillation/test_distillation.py::test_losses_on_crafted_outputs")
class SoftTargetTraining(DistillationSurgery):
    """Hinton's soft targets: α · CE(hard) + (1 − α) · τ² · KL(soft teacher ‖ soft student)."""

    key = "soft_target_training"
    Params = SoftTargetParams
    needs_discrete = True

    def loss(self, obs: th.Tensor, teacher_out: th.Tensor, student_out: th.Tensor) -> th.Tensor:
        """The α-mix of hard cross-entropy and the τ-softened KL."""
        return soft_target_loss(teacher_out, student_out, self.params.alpha, self.params.temperature)


@dataclass
class FeatureMatchingParams(DistillationFields):
    weight: float = param(1.0, "λ, weight of the feature-matching term", ge=0.0)


@register(proof="tests/distillation/test_distillation.py::test_feature_matching_aligns_hidden_layers")
class FeatureMatching(DistillationSurgery):
    """FitNets-style: match the teacher's last hidden layer through a learnt linear map, plus the KL."""

    key = "feature_matching"
    Params = FeatureMatchingParams
    needs_discrete = True

    def extra_modules(self, student: BaseAlgorithm, teacher: BaseAlgorithm) -> list[nn.Module]:
        probe = th.as_tensor(np.zeros((1, *student.observation_space.shape), dtype=np.float32))
        with th.no_grad():
            s_dim = policy_latent(student, probe.to(student.device)).shape[-1]
            t_dim = policy_latent(teacher, probe.to(teacher.device)).shape[-1]
        #: W: student hidden features -> teacher hidden features
        self.regressor = nn.Linear(s_dim, t_dim).to(student.device)
        self._student = student
        return [self.regressor]

    def feature_loss(self, obs: th.Tensor) -> th.Tensor:
        """‖W h_s − h_t‖² averaged over the batch."""
        with th.no_grad():
            target = policy_latent(self._teacher, obs.to(self._teacher.device)).to(obs.device)
        return F.mse_loss(self.regressor(policy_latent(self._student, obs)), target)

    def loss(self, obs: th.Tensor, teacher_out: th.Tensor, student_out: th.Tensor) -> th.Tensor:
        """KL(softmax(t) ‖ softmax(s)) + λ ‖W h_s − h_t‖²."""
        return soft_kl(teacher_out, student_out, 1.0) + self.params.weight * self.feature_loss(obs)
