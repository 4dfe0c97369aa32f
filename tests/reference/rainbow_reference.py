"""Rainbow written plainly, in one file, for tests only.

An independent implementation of the Rainbow network and update (dueling C51 head with
factorised noisy layers; double-Q next action; n-step target through the batch's
``discounts``; projection by floor/ceil index arithmetic with its own
handling of atoms hit exactly; importance-weighted cross-entropy; priorities = per-sample loss). The
composed surgeries must match it numerically.
"""

from __future__ import annotations

import torch as th
from torch import nn
from torch.nn import functional as F


class PlainNoisyLinear(nn.Module):
    def __init__(self, fan_in: int, fan_out: int) -> None:
        super().__init__()
        self.w_mu = nn.Parameter(th.zeros(fan_out, fan_in))
        self.w_sigma = nn.Parameter(th.zeros(fan_out, fan_in))
        self.b_mu = nn.Parameter(th.zeros(fan_out))
        self.b_sigma = nn.Parameter(th.zeros(fan_out))
        self.eps_in = th.zeros(fan_in)
        self.eps_out = th.zeros(fan_out)

    def size(self) -> int:
        return self.eps_in.shape[0] + self.eps_out.shape[0]

    def take(self, noise: th.Tensor) -> None:
        self.eps_in.copy_(noise[: self.eps_in.shape[0]])
        self.eps_out.copy_(noise[self.eps_in.shape[0] : self.size()])

    def forward(self, x: th.Tensor) -> th.Tensor:
        w = self.w_mu + self.w_sigma * self.eps_out[:, None] * self.eps_in[None, :]
        return x @ w.T + self.b_mu + self.b_sigma * self.eps_out


class PlainRainbowNet(nn.Module):
    """trunk -> (value, advantage) streams, one hidden layer each, C51 logits (B, A, K)."""

    def __init__(self, obs_dim: int, hidden: int, n_actions: int, n_atoms: int) -> None:
        super().__init__()
        self.n_actions, self.n_atoms = n_actions, n_atoms
        self.trunk = PlainNoisyLinear(obs_dim, hidden)
        self.value_hidden = PlainNoisyLinear(hidden, hidden)
        self.value_out = PlainNoisyLinear(hidden, n_atoms)
        self.adv_hidden = PlainNoisyLinear(hidden, hidden)
        self.adv_out = PlainNoisyLinear(hidden, n_actions * n_atoms)

    def resample(self) -> None:
        """New noise: one draw of N(0, 1) for the whole network, f(x) = sgn(x) √|x|, cut into each
        layer's ε_in, ε_out in layer order (the library's convention: one draw per network)."""
        x = th.randn(sum(layer.size() for layer in self.layers()))
        noise = x.sign() * x.abs().sqrt()
        for layer in self.layers():
            layer.take(noise)
            noise = noise[layer.size() :]

    def layers(self) -> list[PlainNoisyLinear]:
        """In the order the library defines its layers: trunk, value stream, advantage stream."""
        return [self.trunk, self.value_hidden, self.value_out, self.adv_hidden, self.adv_out]

    def forward(self, obs: th.Tensor) -> th.Tensor:
        h = F.relu(self.trunk(obs))
        v = self.value_out(F.relu(self.value_hidden(h))).view(-1, 1, self.n_atoms)
        a = self.adv_out(F.relu(self.adv_hidden(h))).view(-1, self.n_actions, self.n_atoms)
        return v + a - a.mean(dim=1, keepdim=True)


def project(next_probs, rewards, dones, discounts, support):
    """C51 projection with explicit lower/upper atom indices."""
    v_min, v_max = support[0].item(), support[-1].item()
    delta = (v_max - v_min) / (len(support) - 1)
    tz = (rewards + (1 - dones) * discounts * support[None, :]).clamp(v_min, v_max)
    b = (tz - v_min) / delta
    lower, upper = b.floor().long(), b.ceil().long()
    m = th.zeros_like(next_probs)
    m.scatter_add_(1, lower, next_probs * (upper.float() - b))
    m.scatter_add_(1, upper, next_probs * (b - lower.float()))
    m.scatter_add_(1, lower, next_probs * (lower == upper).float())  # b landed exactly on an atom
    return m


def rainbow_loss(online, target, batch, support):
    """Importance-weighted C51 loss with a double-Q next action; returns (loss, per-sample loss)."""
    logits = online(batch.observations)
    chosen = logits[th.arange(len(logits)), batch.actions.view(-1)]
    with th.no_grad():
        next_q = (F.softmax(online(batch.next_observations), -1) * support).sum(-1)
        a_star = next_q.argmax(1)
        next_probs = F.softmax(target(batch.next_observations), -1)[th.arange(len(logits)), a_star]
        m = project(next_probs, batch.rewards, batch.dones, batch.discounts, support)
    per_sample = -(m * F.log_softmax(chosen, -1)).sum(-1)
    return (batch.weights * per_sample).mean(), per_sample.detach()
