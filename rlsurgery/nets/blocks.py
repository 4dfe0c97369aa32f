"""Modules that network surgeries insert: residual, dense, gated and attention blocks.

Each is built so that inserting it leaves the network's function unchanged (its new
branch starts at zero, its gate at one, or a learnt correction cancels its shortcut); training
then decides how much it is used.
"""

from __future__ import annotations

from typing import Literal

import torch as th
import torch.nn.functional as F
from torch import nn


class Residual(nn.Module):
    """y = S x + f(x), the residual form u_{l+1} = u_l + f(u_l) of He et al. 2016
    (https://arxiv.org/abs/1512.03385), built around an existing block g so that inserting it leaves
    the function unchanged::

        f(x) = g(x) − C x,   C = S at insertion   ⇒   y = g(x) at insertion

    * S (``shortcut``) is the identity when the input and output widths match. Where they differ
      it is a projection, a learnt ``Linear(in, out, bias=False)`` initialised to the rectangular
      identity [I 0]: the first min(in, out) coordinates of x pass straight through, the others are
      dropped (in > out) or padded with zeros (in < out), He et al.'s zero-padding shortcut, which
      training may then change.
    * C (``correction``), a learnt ``Linear(in, out, bias=False)``, cancels the shortcut at first;
      training moves it (C = 0 is the classic block y = S x + g(x)). Without dropping, the block can
      express exactly what g(x) + (S − C) x can, the same family as a zero-initialised shortcut.
      With ``correction="diagonal"`` C is :class:`DiagonalMap`, c ⊙ [I 0] x with one learnt scale
      per coordinate (init 1): the same function at insertion for O(width) instead of O(width²)
      multiply-adds per sample; the block then expresses g(x) + (S − diag(c)) x.
    * ``drop`` acts on the whole residual branch f (the identity here; ``stochastic_depth`` puts a
      per-sample DropPath there), so a dropped block gives y = S x: it passes its input through.
    """

    def __init__(
        self,
        body: nn.Module,
        in_features: int,
        out_features: int,
        correction: Literal["full", "diagonal"] = "full",
    ) -> None:
        super().__init__()
        self.body = body
        self.shortcut: nn.Module = nn.Identity()
        if in_features != out_features:
            self.shortcut = nn.Linear(in_features, out_features, bias=False)
            nn.init.eye_(self.shortcut.weight)
        self.correction: nn.Module
        if correction == "diagonal":
            self.correction = DiagonalMap(in_features, out_features)
        else:
            self.correction = nn.Linear(in_features, out_features, bias=False)
            nn.init.eye_(self.correction.weight)
        self.drop: nn.Module = nn.Identity()

    def forward(self, x: th.Tensor) -> th.Tensor:
        return self.shortcut(x) + self.drop(self.body(x) - self.correction(x))


class DiagonalMap(nn.Module):
    """x ↦ c ⊙ [I 0] x: the first min(in, out) coordinates of x, each scaled by a learnt c_i
    (initialised to 1), zero-padded to ``out_features`` where the output is wider."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.out_features = out_features
        self.weight = nn.Parameter(th.ones(min(in_features, out_features)))

    def forward(self, x: th.Tensor) -> th.Tensor:
        shared = self.weight.numel()
        y = x[..., :shared] * self.weight
        return F.pad(y, (0, self.out_features - shared)) if self.out_features > shared else y


class DenseConnections(nn.Module):
    """DenseNet-style MLP (Huang et al. 2017, https://arxiv.org/abs/1608.06993): block j reads the
    concatenation [h_{j−1}, x, h_1, …, h_{j−2}] of every earlier output; the weights on the
    extra inputs start at zero, so the function equals the plain chain at first."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: th.Tensor) -> th.Tensor:
        outputs = [x]
        for block in self.blocks:
            outputs.append(block(th.cat([outputs[-1], *outputs[:-1]], dim=-1)))
        return outputs[-1]


class Gate(nn.Module):
    """y = 2σ(W x + b) ⊙ x with W, b zero-initialised: the gate starts at exactly 1 (y = x).

    The gating of highway / GLU-style units (Dauphin et al. 2017, https://arxiv.org/abs/1612.08083),
    scaled by 2 so that insertion preserves the outputs.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.gate = nn.Linear(features, features)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)

    def forward(self, x: th.Tensor) -> th.Tensor:
        return 2 * th.sigmoid(self.gate(x)) * x


class FeatureAttention(nn.Module):
    """Residual self-attention over a feature vector cut into ``tokens`` tokens of size d = F / tokens.

    y = x + W_o · MHA(LN(tokens(x))) with W_o zero-initialised (Vaswani et al. 2017,
    https://arxiv.org/abs/1706.03762; pre-norm residual as in Parisotto et al. 2020,
    https://arxiv.org/abs/1910.06764): y = x at first. The attention weights of the last
    forward pass are kept in ``last_attention`` (batch, tokens, tokens).
    """

    def __init__(self, features: int, tokens: int, heads: int = 1) -> None:
        super().__init__()
        if features % tokens:
            raise ValueError(f"{features} features cannot be cut into {tokens} tokens")
        self.tokens, self.dim = tokens, features // tokens
        self.norm = nn.LayerNorm(self.dim)
        self.attention = nn.MultiheadAttention(self.dim, heads, batch_first=True)
        self.out = nn.Linear(features, features)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.last_attention: th.Tensor | None = None

    def forward(self, x: th.Tensor) -> th.Tensor:
        tokens = self.norm(x.reshape(*x.shape[:-1], self.tokens, self.dim).reshape(-1, self.tokens, self.dim))
        mixed, weights = self.attention(tokens, tokens, tokens, need_weights=True)
        self.last_attention = weights.detach()
        return x + self.out(mixed.reshape(*x.shape))


class LowRankLinear(nn.Module):
    """y = up(down(x)): a Linear of rank ≤ k stored as two factors, down (k × in, no bias) and
    up (out × k, the original bias); ``in_features``, ``out_features`` and ``rank`` as attributes."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.down = nn.Linear(in_features, rank, bias=False)
        self.up = nn.Linear(rank, out_features, bias=bias)

    def forward(self, x: th.Tensor) -> th.Tensor:
        return self.up(self.down(x))

    def weight(self) -> th.Tensor:
        """The (out × in) matrix the two factors make."""
        return self.up.weight @ self.down.weight


class LoRALinear(nn.Module):
    """y = W₀x + b + (α/r)·B(Ax): a frozen Linear ``base`` plus a trainable rank-r update, A (r × in,
    Kaiming-uniform as a Linear's weight) and B (out × r, zero: outputs unchanged at insertion)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base, self.rank, self.scale = base, rank, alpha / rank
        self.in_features, self.out_features = base.in_features, base.out_features
        self.lora_a = nn.Parameter(th.empty(rank, base.in_features, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_a, a=5**0.5)
        self.lora_b = nn.Parameter(th.zeros(base.out_features, rank, device=base.weight.device))

    def forward(self, x: th.Tensor) -> th.Tensor:
        return self.base(x) + self.scale * F.linear(F.linear(x, self.lora_a), self.lora_b)

    def merged(self) -> nn.Linear:
        """A plain Linear with W = W₀ + (α/r)·B·A and the base's bias (for export)."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.base.bias is not None)
        linear.to(self.base.weight.device, self.base.weight.dtype)
        with th.no_grad():
            linear.weight.copy_(self.base.weight + self.scale * self.lora_b @ self.lora_a)
            if self.base.bias is not None:
                linear.bias.copy_(self.base.bias)
        return linear


class BottleneckAdapter(nn.Module):
    """h ↦ h + up(φ(down(h))): down (width → bottleneck), φ = ReLU, up (bottleneck → width) with zero
    weight and bias, so the adapter is the identity at insertion."""

    def __init__(self, width: int, bottleneck: int) -> None:
        super().__init__()
        self.down = nn.Linear(width, bottleneck)
        self.up = nn.Linear(bottleneck, width)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: th.Tensor) -> th.Tensor:
        return h + self.up(F.relu(self.down(h)))
