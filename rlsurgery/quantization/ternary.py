"""Ternary networks: each weight is −α, 0 or +α (TWN, Li, Zhang & Liu 2016,
https://arxiv.org/abs/1605.04711)::

    Δ_r = 0.7 · mean_j |W_rj|,   Ŵ_rj = α_r · sign(W_rj) · [|W_rj| > Δ_r],
    α_r = mean of |W_rj| over the weights above Δ_r;   backward: straight-through

TWN takes one Δ and α per layer; here they are per output row, as the binary weights' α. Trained
through further training; the size it reports is the packed size, 2 bits a weight plus an fp32 α
and bias per row; it computes in fp32 (simulated latency). The first and last layer of each network
stay fp32 unless ``keep_ends=False``.
"""

from __future__ import annotations

from rlsurgery.catalog import register
from rlsurgery.quantization.fake import FakeQuantization, LowBitParams


@register(proof="tests/quantization/test_fake.py::test_ternary_networks_use_twn_threshold")
class TernaryNetworks(FakeQuantization):
    """Weights in {−α, 0, +α} with TWN's threshold 0.7·mean|w|, trained straight-through; 2 bits a weight."""

    key = "ternary_networks"
    code = "ternary"
    Params = LowBitParams
    params: LowBitParams
