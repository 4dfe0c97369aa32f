"""Q-network and policies of :class:`~rlsurgery.agents.dqn.SurgicalDQN`.

:class:`SurgicalQNetwork` is SB3's ``QNetwork`` with two named extension points that
value-function surgeries use instead of replacing the class:

* ``atoms``: how many numbers the head outputs per action (1 for a scalar Q-value,
  K for a categorical or quantile return distribution);
* ``readout``: the module that turns the (B, A, atoms) outputs into Q-values (B, A).

With ``atoms = 1`` and the scalar readout it computes exactly what SB3's network does,
with the same parameters, so a SurgicalDQN with no surgeries is SB3's DQN.
"""

from __future__ import annotations

from typing import Any

import torch as th
from stable_baselines3.common.torch_layers import CombinedExtractor, NatureCNN
from stable_baselines3.common.type_aliases import PyTorchObs
from stable_baselines3.dqn.policies import DQNPolicy, QNetwork
from torch import nn

from rlsurgery.nets.modules import modules_of_type


class ScalarReadout(nn.Module):
    """Q(s, a) is the single output per action: (B, A, 1) -> (B, A)."""

    def forward(self, outputs: th.Tensor) -> th.Tensor:
        """Drop the atom dimension."""
        return outputs.squeeze(-1)


class SurgicalQNetwork(QNetwork):
    """SB3's Q-network with an ``atoms`` output layout and a ``readout`` to Q-values."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: outputs per action (set by distributional surgeries)
        self.atoms = 1
        #: maps (B, A, atoms) outputs to Q-values (B, A)
        self.readout: nn.Module = ScalarReadout()

    @property
    def n_actions(self) -> int:
        """Number of discrete actions."""
        return int(self.action_space.n)

    def outputs(self, obs: PyTorchObs) -> th.Tensor:
        """Raw head outputs, shape (B, A, atoms): Q-values, logits or quantiles."""
        raw = self.q_net(self.extract_features(obs, self.features_extractor))
        return raw.view(raw.shape[0], self.n_actions, self.atoms)

    def q_values(self, outputs: th.Tensor) -> th.Tensor:
        """Q-values (B, A) from head outputs (B, A, atoms), through the readout."""
        if self.atoms == 1 and type(self.readout) is ScalarReadout:
            return outputs.squeeze(-1)  # the default readout, without a module call
        return self.readout(outputs)

    def forward(self, obs: PyTorchObs) -> th.Tensor:
        """Q-values, shape (B, A)."""
        raw = self.q_net(self.extract_features(obs, self.features_extractor))
        if self.atoms == 1 and type(self.readout) is ScalarReadout:
            return raw  # SB3's computation, op for op
        return self.readout(raw.view(raw.shape[0], self.n_actions, self.atoms))


class SurgicalDQNPolicy(DQNPolicy):
    """SB3's ``DQNPolicy`` building :class:`SurgicalQNetwork` (MLP features by default)."""

    def set_training_mode(self, mode: bool) -> None:
        """SB3's: every module in training (True) or evaluation mode; ``predict`` calls it at every
        env step, so the modules are only walked when one of them is in the other mode."""
        if any(m.training != mode for m in modules_of_type(self, nn.Module)):
            super().set_training_mode(mode)

    def make_q_net(self) -> SurgicalQNetwork:
        """Build an online or target network (separate features extractor each)."""
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return SurgicalQNetwork(**net_args).to(self.device)


class SurgicalCnnPolicy(SurgicalDQNPolicy):
    """Image observations: NatureCNN features, as SB3's ``CnnPolicy``."""

    def __init__(self, *args: Any, features_extractor_class: type = NatureCNN, **kwargs: Any) -> None:
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)


class SurgicalMultiInputPolicy(SurgicalDQNPolicy):
    """Dict observations: SB3's ``CombinedExtractor``, as SB3's ``MultiInputPolicy``."""

    def __init__(self, *args: Any, features_extractor_class: type = CombinedExtractor, **kwargs: Any) -> None:
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)
