"""Binary networks: each weight is ±α, α one scale per output row (BinaryConnect, Courbariaux et al.
2015, https://arxiv.org/abs/1511.00363; the scale as in XNOR-Net's BWN, Rastegari et al. 2016,
https://arxiv.org/abs/1603.05279)::

    forward:   Ŵ_r = α_r · sign(W_r),  α_r = mean_j |W_rj|
    backward:  ∂L/∂W ≈ ∂L/∂Ŵ   (straight-through; the latent fp32 W trains)

Trained through further training (``learn`` after ``rls.operate``, or from ``at_step``). The size it
reports is the packed size, 1 bit a weight plus one fp32 α and bias per row; the layer still computes
in fp32 (no 1-bit CPU kernel), so its latency is that of fp32. The first and last layer of each
network stay fp32 unless ``keep_ends=False``.
"""

from __future__ import annotations

from rlsurgery.catalog import register
from rlsurgery.quantization.fake import FakeQuantization, LowBitParams


@register(proof="tests/quantization/test_fake.py::test_binary_networks_use_alpha_sign_weights")
class BinaryNetworks(FakeQuantization):
    """Weights α·sign(w) with α per output row, trained straight-through; 1 bit a weight."""

    key = "binary_networks"
    code = "binary"
    Params = LowBitParams
    params: LowBitParams
