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
algorithm. What was measured is in the student's state of the surgery (``result``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn
from torch.nn import functional as F

from rlsurgery.agents import surgical_class_of
from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError, ParameterError
from rlsurgery.core.params import MAX_COPIES, param
from rlsurgery.core.state import ResultState
from rlsurgery.core.surgery import IMITATION_FAMILIES, Attachment, Surgery, reject_dict_observations
from rlsurgery.distillation.core import (
    DistillationFields,
    action_agreement,
    collect_states,
    count_parameters,
    discrete_actions,
    distill,
    outputs_of_policy,
    policy_latent,
    soft_kl,
)
from rlsurgery.envs import ensure_registered
from rlsurgery.io import load_saved_model
from rlsurgery.nets.layout import layout_of
from rlsurgery.runtime.models import evaluation_env
from rlsurgery.zoo import is_model_source

#: the families that can act in a Discrete action space (SAC acts in continuous spaces only), for
#: the losses on a discrete policy's logits
DISCRETE_FAMILIES = tuple(f for f in IMITATION_FAMILIES if f != "sac")


def soft_target_loss(teacher: th.Tensor, student: th.Tensor, alpha: float, temperature: float) -> th.Tensor:
    """α · CE(s, argmax t) + (1 − α) · τ² · KL(softmax(t/τ) ‖ softmax(s/τ))."""
    hard = F.cross_entropy(student, teacher.argmax(dim=-1))
    return alpha * hard + (1 - alpha) * temperature**2 * soft_kl(teacher, student, temperature)


def distillation_report(student: BaseAlgorithm) -> dict[str, Any] | None:
    """What the distillation that made ``student`` measured (agreement, parameter counts …), or None."""
    for surgery in getattr(student, "surgeries", []):
        if isinstance(surgery, DistillationSurgery):
            return surgery.state(student).result
    return None


class DistillationSurgery(Surgery):
    """Shared plumbing: the teacher, the spaces check, the loop, the report, ``transform``."""

    cost_note = (
        "a one-off distillation phase when the student is built: `steps` env steps (10k by default)"
        " of student rollouts labelled by the teacher, then `epochs` passes per round over all "
        "collected states; it does not grow with the RL run, so the ratio measured on a 5k-step run"
        " overstates it for longer ones"
    )

    State: ClassVar[type | None] = ResultState

    attaches_to = (Attachment.POST_TRAINING,)
    families = IMITATION_FAMILIES
    needs_surgical_agent = False  # a plain SB3 teacher is distilled too (the student is surgical)
    #: whether the loss needs discrete actions (such surgeries list only :data:`DISCRETE_FAMILIES`)
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
        if building and (not teacher or not is_model_source(teacher)):
            raise ParameterError(
                f"{self.key}: parameter 'teacher' must be an existing .zip file or a run folder "
                f"(rlsurgery or rl-zoo3) (got {teacher!r})"
            )

    # -- the loss (obs, teacher outputs, student outputs) -> scalar
    def loss(self, obs: th.Tensor, teacher_out: th.Tensor, student_out: th.Tensor) -> th.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must define loss()")

    def extra_modules(self, student: BaseAlgorithm, teacher: BaseAlgorithm) -> list[nn.Module]:
        """Modules trained along with the student (none by default)."""
        return []

    def teacher_model(self, agent: BaseAlgorithm) -> BaseAlgorithm:
        """The teacher, checked against the student's spaces."""
        teacher = getattr(self, "_teacher_model", None) or load_saved_model(self.params.teacher)
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
        self.state(agent).result = report
        self._teacher = None

    def check_operable(self, model: BaseAlgorithm, env_id: str | None) -> None:
        super().check_operable(model, env_id)
        if env_id is None:
            raise IncompatibleSurgeryError(
                f"{self.key}: the teacher does not record its environment; pass env_id / --env"
            )

    def transform(self, model: BaseAlgorithm, env_id: str | None) -> BaseAlgorithm:
        """Distil ``model`` (the teacher, any SB3 model) into a new student of its algorithm
        (``net_arch`` layers), built with this surgery (its provenance record says ``build``)."""
        assert env_id is not None  # check_operable refused the teacher otherwise
        cls = surgical_class_of(model)
        policy_kwargs = dict(getattr(model, "policy_kwargs", {}) or {})
        if self.params.net_arch is not None:
            policy_kwargs["net_arch"] = list(self.params.net_arch)
        self._teacher_model = model
        try:
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
    families = DISCRETE_FAMILIES

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
    families = DISCRETE_FAMILIES

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


@dataclass
class SelfDistillationParams(DistillationFields):
    temperature: float = param(1.0, "τ of the teacher's softmax", gt=0.0)


@register(
    proof="tests/distillation/test_distillation.py::test_self_distillation_rebuilds_the_same_network_from_its_checkpoint"
)
class SelfDistillation(PolicyDistillation):
    """Born-again network: a freshly initialised copy of the same architecture learns from its own checkpoint.

    Furlanello et al. 2018 (https://arxiv.org/abs/1805.04770): the teacher is an earlier
    checkpoint of the same model; the student has the teacher's architecture exactly.
    """

    key = "self_distillation"
    Params = SelfDistillationParams

    def validate(self, agent: BaseAlgorithm) -> None:
        super().validate(agent)
        if self.params.net_arch is not None:
            raise ParameterError(
                f"{self.key}: the student keeps the teacher's architecture; net_arch must stay unset"
            )

    def teacher_model(self, agent: BaseAlgorithm) -> BaseAlgorithm:
        teacher = super().teacher_model(agent)
        if count_parameters(teacher) != count_parameters(agent) or type(teacher.policy) is not type(
            agent.policy
        ):
            raise IncompatibleSurgeryError(
                f"{self.key}: the checkpoint ({type(teacher.policy).__name__}, "
                f"{count_parameters(teacher)} parameters) is not the same network as the agent "
                f"({type(agent.policy).__name__}, {count_parameters(agent)})"
            )
        return teacher


class _Peers(nn.Module):
    """The peer students of online distillation (copies of the student's policy, fresh weights)."""

    def __init__(self, policies: list[nn.Module]) -> None:
        super().__init__()
        self.policies = nn.ModuleList(policies)


@dataclass
class OnlineDistillationParams(DistillationFields):
    peers: int = param(
        2,
        "extra students trained alongside the agent (k), which all learn from each other",
        ge=1,
        le=MAX_COPIES,
    )
    mutual_weight: float = param(1.0, "β, weight of the mutual KL between students", ge=0.0)


@register(proof="tests/distillation/test_distillation.py::test_online_distillation_students_teach_each_other")
class OnlineDistillation(DistillationSurgery):
    """Deep mutual learning with a teacher: the agent and k peer students learn from it and from each other.

    Zhang et al. 2018 (https://arxiv.org/abs/1706.00384), Anil et al. 2018 (codistillation,
    https://arxiv.org/abs/1804.03235). For each student i among the agent and its peers::

        L_i = KL(softmax(t) ‖ softmax(s_i)) + β · mean_{j≠i} KL(softmax(sg(s_j)) ‖ softmax(s_i))

    The peers are discarded afterwards; ``result["peer_disagreement"]`` reports
    how often the agent's greedy action differs from each peer's.
    """

    key = "online_distillation"
    cost_note = (
        "the one-off distillation phase at build (see policy_distillation), with k peer students "
        "trained beside the agent and a mutual KL between every pair"
    )
    Params = OnlineDistillationParams
    needs_discrete = True
    families = DISCRETE_FAMILIES

    def extra_modules(self, student: BaseAlgorithm, teacher: BaseAlgorithm) -> list[nn.Module]:
        import copy

        policies = []
        for i in range(self.params.peers):
            peer = copy.deepcopy(student.policy)
            th.manual_seed(self.params.seed + 1 + i)
            for module in peer.modules():
                if hasattr(module, "reset_parameters") and module is not peer:
                    module.reset_parameters()
            policies.append(peer)
        self.peers = _Peers(policies).to(student.device)
        return [self.peers]

    def loss(self, obs: th.Tensor, teacher_out: th.Tensor, student_out: th.Tensor) -> th.Tensor:
        outputs = [student_out] + [outputs_of_policy(p, obs, True) for p in self.peers.policies]
        total = th.zeros((), device=student_out.device)
        for i, s_i in enumerate(outputs):
            total = total + soft_kl(teacher_out, s_i, 1.0)
            others = [s_j.detach() for j, s_j in enumerate(outputs) if j != i]
            if others and self.params.mutual_weight > 0:
                total = (
                    total
                    + self.params.mutual_weight * th.stack([soft_kl(o, s_i, 1.0) for o in others]).mean()
                )
        return total

    def after_build(self, agent: BaseAlgorithm) -> None:
        super().after_build(agent)
        env = evaluation_env(agent, self.key)
        states = th.as_tensor(collect_states(agent, env, 500, self.params.seed + 31), device=agent.device)
        env.close()
        with th.no_grad():
            mine = policy_outputs_argmax(agent.policy, states)
            self.state(agent).result["peer_disagreement"] = [
                float((policy_outputs_argmax(p, states) != mine).float().mean()) for p in self.peers.policies
            ]
        self.peers = None


def policy_outputs_argmax(policy: nn.Module, obs: th.Tensor) -> th.Tensor:
    """Greedy discrete actions of a policy module."""
    return outputs_of_policy(policy, obs.float(), True).argmax(dim=-1)


def attention_map(features: th.Tensor, power: float = 2.0) -> th.Tensor:
    """Activation-based attention of a conv feature map: Σ_c |F_c|^p, flattened and L2-normalised (B, H·W)."""
    att = features.abs().pow(power).sum(dim=1).flatten(1)
    return F.normalize(att, dim=1)


def conv_outputs(policy: nn.Module, obs: th.Tensor) -> list[th.Tensor]:
    """Outputs of every Conv2d of the policy's (actor's) features extractor, in order."""
    layout = layout_of(policy)
    extractor = layout.feature_extractor(policy)
    outputs: list[th.Tensor] = []
    convs = [m for m in extractor.modules() if isinstance(m, nn.Conv2d)]
    hooks = [m.register_forward_hook(lambda _m, _i, out: outputs.append(out)) for m in convs]
    try:
        layout.features(policy, obs)  # SB3's preprocessing (images / 255) included
    finally:
        for hook in hooks:
            hook.remove()
    return outputs


@dataclass
class AttentionTransferParams(DistillationFields):
    weight: float = param(
        1000.0, "β, weight of the attention term (maps are unit vectors, so the term is small)", ge=0.0
    )
    power: float = param(2.0, "p of the attention map Σ_c |F_c|^p", gt=0.0)


@register(proof="tests/distillation/test_distillation.py::test_attention_transfer_aligns_conv_attention_maps")
class AttentionTransfer(DistillationSurgery):
    """Match the teacher's spatial attention maps (conv policies) on top of the policy KL.

    Zagoruyko & Komodakis 2017 (https://arxiv.org/abs/1612.03928)::

        L = KL(softmax(t) ‖ softmax(s)) + β/2 · Σ_layers ‖ Q_s/‖Q_s‖ − Q_t/‖Q_t‖ ‖₂,   Q = vec(Σ_c |F_c|^p)

    The student and the teacher need convolutional features extractors with the same number
    of conv layers and the same spatial sizes (e.g. both ``CnnPolicy``); policies without
    conv layers have no attention maps and are refused.
    """

    key = "attention_transfer"
    cost_note = (
        "the one-off distillation phase at build (see policy_distillation), on a CnnPolicy, with "
        "the teacher's conv features and both attention maps computed on every minibatch"
    )
    Params = AttentionTransferParams
    needs_discrete = True
    families = DISCRETE_FAMILIES

    def check_spaces(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        super().check_spaces(observation_space, action_space)
        if len(getattr(observation_space, "shape", ()) or ()) != 3:
            raise IncompatibleSurgeryError(
                f"{self.key}: needs image observations and a CnnPolicy (attention maps come from conv "
                "layers); "
                f"got observations of shape {getattr(observation_space, 'shape', None)}"
            )

    def extra_modules(self, student: BaseAlgorithm, teacher: BaseAlgorithm) -> list[nn.Module]:
        probe = th.as_tensor(student.observation_space.sample()[None], device=student.device)
        with th.no_grad():
            s_maps, t_maps = (
                conv_outputs(student.policy, probe),
                conv_outputs(teacher.policy, probe.to(teacher.device)),
            )
        if (
            not s_maps
            or len(s_maps) != len(t_maps)
            or any(a.shape[2:] != b.shape[2:] for a, b in zip(s_maps, t_maps))
        ):
            raise IncompatibleSurgeryError(
                f"{self.key}: the student's and the teacher's conv layers do not pair up "
                f"(spatial sizes {[tuple(m.shape[2:]) for m in s_maps]} vs "
                f"{[tuple(m.shape[2:]) for m in t_maps]})"
            )
        self._student = student
        return []

    def attention_loss(self, obs: th.Tensor) -> th.Tensor:
        """β/2 · Σ_layers ‖ a_s − a_t ‖₂ (batch mean)."""
        with th.no_grad():
            teacher_maps = [
                attention_map(m, self.params.power) for m in conv_outputs(self._teacher.policy, obs)
            ]
        student_maps = [attention_map(m, self.params.power) for m in conv_outputs(self._student.policy, obs)]
        distance = sum((s - t).norm(dim=1).mean() for s, t in zip(student_maps, teacher_maps))
        return self.params.weight / 2 * distance

    def loss(self, obs: th.Tensor, teacher_out: th.Tensor, student_out: th.Tensor) -> th.Tensor:
        return soft_kl(teacher_out, student_out, 1.0) + self.attention_loss(obs)
