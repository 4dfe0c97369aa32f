"""The arithmetic of quantization, as pure tensor functions (the layers and the surgeries call these).

Symmetric per-row codes for weights, affine codes for activations (Jacob et al. 2018,
https://arxiv.org/abs/1712.05877), and the 1- and 2-bit weights of BinaryConnect / XNOR-Net and
TWN::

    weights, b bits:      s_r = max_j |w_rj| / (2^{b−1} − 1),  q = clamp(round(w / s_r), −q_max, q_max)
                          (or one s = max |w| / (2^{b−1} − 1) per tensor)
    activations, 8 bits:  s = (hi − lo) / 255,  z = −128 − round(lo / s),
                          q = clamp(round(x / s) + z, −128, 127)
    binary:               w_b = α_r · sign(w),  α_r = mean_j |w_rj|
    ternary:              Δ_r = 0.7 · mean_j |w_rj|,  w_t = α_r · sign(w) · [|w| > Δ_r],
                          α_r = mean of |w_rj| over |w_rj| > Δ_r
    straight-through:     forward q(x), backward ∂/∂x as if q were the identity (Bengio et al. 2013)

The activation range [lo, hi] is widened to hold 0, so that 0 (ReLU's output, padding) is exact.
"""

from __future__ import annotations

import math

import torch as th

#: the smallest scale used (an all-zero row or a constant input would otherwise divide by zero)
MIN_SCALE = 1e-12
#: TWN's threshold factor: Δ = 0.7 · mean |w| (Li, Zhang & Liu 2016, https://arxiv.org/abs/1605.04711)
TERNARY_THRESHOLD = 0.7


def signed_range(bits: int) -> tuple[int, int]:
    """(q_min, q_max) of a signed ``bits``-bit integer: (−2^{b−1}, 2^{b−1} − 1)."""
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def row_scales(weight: th.Tensor, bits: int = 8, per_tensor: bool = False) -> th.Tensor:
    """s_r = max_j |w_rj| / (2^{b−1} − 1): one scale per output row (dim 0) of ``weight``; with
    ``per_tensor``, one scale s = max |w| / (2^{b−1} − 1) for the whole tensor (shape (1,))."""
    peak = weight.detach().abs().reshape(weight.shape[0], -1).amax(1)
    if per_tensor:
        peak = peak.amax().reshape(1)
    return (peak / signed_range(bits)[1]).clamp_min(MIN_SCALE)


def per_row(values: th.Tensor, like: th.Tensor) -> th.Tensor:
    """``values`` (one per row) shaped to broadcast against ``like`` (rows on dim 0)."""
    return values.reshape(-1, *([1] * (like.dim() - 1)))


def quantize_weight(
    weight: th.Tensor, bits: int = 8, per_tensor: bool = False
) -> tuple[th.Tensor, th.Tensor]:
    """(codes, scales): symmetric per-row codes q = clamp(round(w / s_r), −q_max, q_max) as int8
    (for ``bits`` ≤ 8), and the row scales s_r (one scale, shape (1,), with ``per_tensor``); w ≈ s_r · q."""
    scales = row_scales(weight, bits, per_tensor)
    limit = signed_range(bits)[1]
    codes = th.clamp(th.round(weight.detach() / per_row(scales, weight)), -limit, limit)
    return codes.to(th.int8), scales


def dequantize_weight(codes: th.Tensor, scales: th.Tensor) -> th.Tensor:
    """s_r · q: the float weight the codes stand for."""
    return codes.float() * per_row(scales, codes)


def affine_parameters(low: th.Tensor, high: th.Tensor, bits: int = 8) -> tuple[th.Tensor, th.Tensor]:
    """(scale, zero point) of the affine code covering [min(lo, 0), max(hi, 0)] with 2^b levels."""
    qmin, qmax = signed_range(bits)
    low, high = th.clamp(low, max=0.0), th.clamp(high, min=0.0)
    scale = ((high - low) / (qmax - qmin)).clamp_min(MIN_SCALE)
    zero_point = th.clamp(qmin - th.round(low / scale), qmin, qmax)
    return scale, zero_point


def quantize_affine(x: th.Tensor, scale: th.Tensor, zero_point: th.Tensor, bits: int = 8) -> th.Tensor:
    """q = clamp(round(x / s) + z, q_min, q_max), as a float tensor of integer values."""
    qmin, qmax = signed_range(bits)
    return th.clamp(th.round(x / scale) + zero_point, qmin, qmax)


def straight_through(x: th.Tensor, quantized: th.Tensor) -> th.Tensor:
    """``quantized`` in the forward pass, the gradient of ``x`` in the backward pass."""
    return x + (quantized - x).detach()


def fake_quantize_affine(x: th.Tensor, scale: th.Tensor, zero_point: th.Tensor, bits: int = 8) -> th.Tensor:
    """s · (q − z): x rounded to its affine code and back, with a straight-through gradient."""
    return straight_through(x, (quantize_affine(x, scale, zero_point, bits) - zero_point) * scale)


def fake_quantize_weight(weight: th.Tensor, bits: int = 8) -> th.Tensor:
    """s_r · q: ``weight`` rounded to its symmetric per-row ``bits``-bit code, straight-through."""
    codes, scales = quantize_weight(weight, bits)
    return straight_through(weight, dequantize_weight(codes, scales))


def binary_weight(weight: th.Tensor) -> th.Tensor:
    """α_r · sign(w) with α_r = mean_j |w_rj| (sign(0) = +1), straight-through."""
    w = weight.detach()
    alpha = w.abs().reshape(w.shape[0], -1).mean(1)
    signs = th.where(w >= 0, 1.0, -1.0)
    return straight_through(weight, per_row(alpha, w) * signs)


def ternary_weight(weight: th.Tensor) -> th.Tensor:
    """α_r · sign(w) · [|w| > Δ_r], Δ_r = 0.7 · mean_j |w_rj|, α_r the mean |w| above Δ_r
    (straight-through)."""
    w = weight.detach()
    magnitude = w.abs().reshape(w.shape[0], -1)
    threshold = TERNARY_THRESHOLD * magnitude.mean(1, keepdim=True)
    kept = (magnitude > threshold).to(w.dtype)
    alpha = (magnitude * kept).sum(1) / kept.sum(1).clamp_min(1.0)
    values = th.sign(w) * kept.reshape(w.shape) * per_row(alpha, w)
    return straight_through(weight, values)


def packed_bytes(count: int, bits: int) -> int:
    """Bytes of ``count`` values of ``bits`` bits each, packed: ⌈count · bits / 8⌉."""
    return math.ceil(count * bits / 8)
