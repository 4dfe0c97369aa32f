"""Pseudo-labeling: target states labelled by the source policy, fitted by the agent as an aux loss.

Lee 2013, "Pseudo-Label" (ICML workshop),
https://www.researchgate.net/publication/280581078_Pseudo-Label_The_Simple_and_Efficient_Semi-Supervised_Learning_Method_for_Deep_Neural_Networks.
A source model (``source``: a trained model of the same family, as a path, or from Python a loaded
model) labels each target batch; the acting network's loss gains::

    labels = action   λ · CE(o(s_t), argmax o_source(s_t))        (discrete actions: the greedy action)
    labels = outputs  λ · ‖o(s_t) − o_source(s_t)‖² (mean)        (Q-values, logits, continuous actions)

with o the acting network's outputs and s_t target observations (rollouts of the current policy,
:mod:`rlsurgery.adaptation.target`). The source is copied into the agent's ``rls_modules`` when the
agent is built, so a saved agent trains on without the source file; it must have the agent's networks
(the same policy and ``policy_kwargs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.adaptation.labels import acting_outputs, label_loss
from rlsurgery.adaptation.target import AdaptationSurgery, TargetFields
from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError, ParameterError
from rlsurgery.core.params import param
from rlsurgery.io import load_saved_model
from rlsurgery.nets.modules import detached_copy
from rlsurgery.zoo import is_model_source


@dataclass
class PseudoLabelParams(TargetFields):
    source: str = param(
        "", "the labelling source model (a .zip or run folder; from Python also a loaded model)"
    )
    labels: str = param("action", "action (its greedy action, discrete spaces) or outputs (its outputs)")
    weight: float = param(1.0, "λ: weight of the pseudo-label term", ge=0.0)

    def check(self) -> None:
        if self.labels not in ("action", "outputs"):
            raise ValueError(f"'labels' must be 'action' or 'outputs' (got {self.labels!r})")


@register(proof="tests/adaptation/test_adaptation.py::test_pseudo_labels_pull_target_actions_to_the_source")
class PseudoLabeling(AdaptationSurgery):
    """Fit the agent's outputs on target states to the labels a source model gives them."""

    key = "pseudo_labeling"
    Params = PseudoLabelParams
    params: PseudoLabelParams
    build_order = 95

    def __init__(self, **params: Any) -> None:
        source = params.get("source")
        self._source_model = source if isinstance(source, BaseAlgorithm) else None
        if self._source_model is not None:
            params = {**params, "source": f"<in-memory model> {type(source).__name__}"}
        super().__init__(**params)

    def validate(self, agent: BaseAlgorithm) -> None:
        super().validate(agent)
        if self.params.labels == "action" and not isinstance(agent.action_space, spaces.Discrete):
            raise IncompatibleSurgeryError(
                f"{self.key}: labels=action needs a Discrete action space (use outputs)"
            )
        fresh = getattr(agent, "_rls_fresh", False)
        if fresh and self._source_model is None and not is_model_source(self.params.source):
            raise ParameterError(
                f"{self.key}: parameter 'source' must be an existing .zip file or a run folder, or a loaded "
                f"model (got {self.params.source!r})"
            )

    def modify_networks(self, agent: BaseAlgorithm) -> None:
        """The labelling copy of the source policy (on load: the module its saved weights go into)."""
        source = self._source_model
        if getattr(agent, "_rls_fresh", False):
            source = source or load_saved_model(self.params.source)
            if type(source.policy) is not type(agent.policy) or source.action_space != agent.action_space:
                raise IncompatibleSurgeryError(
                    f"{self.key}: the source ({type(source).__name__}, {source.action_space}) must be of the "
                    f"agent's kind ({type(agent).__name__}, {agent.action_space})"
                )
            shapes = {n: tuple(t.shape) for n, t in source.policy.state_dict().items()}
            if shapes != {n: tuple(t.shape) for n, t in agent.policy.state_dict().items()}:
                raise IncompatibleSurgeryError(
                    f"{self.key}: the source's networks differ from the agent's (build the agent with the "
                    "source's policy_kwargs)"
                )
            labeller = detached_copy(source.policy)
        else:
            labeller = detached_copy(agent.policy)  # the architecture; the zip holds its weights
        labeller.requires_grad_(False)
        labeller.set_training_mode(False)
        agent.rls_modules[self.key] = labeller.to(agent.device)

    def labels_for(self, agent: BaseAlgorithm, obs: th.Tensor) -> th.Tensor:
        with th.no_grad():
            outputs = acting_outputs(agent, agent.rls_modules[self.key], obs)
        return outputs.argmax(dim=-1) if self.params.labels == "action" else outputs

    def aux_loss(self, agent: BaseAlgorithm, role: str, batch: Any) -> th.Tensor | None:
        batches = self.update_batches(agent, role, batch)
        if batches is None:
            return None
        target = batches[1]
        outputs = acting_outputs(agent, agent.policy, target)
        return self.params.weight * label_loss(outputs, self.labels_for(agent, target))
