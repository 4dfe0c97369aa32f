"""The layers quantization surgeries put in place of ``nn.Linear`` and ``nn.Conv2d``.

==================  ===========================================  ======================================
layer               stores                                        computes (CPU)
==================  ===========================================  ======================================
``Int8Linear``      int8 weight codes, a scale per output row     int8 × int8 → int32 on PyTorch's
                    (or one per layer), fp32 bias, the input's    integer GEMM (``torch._int_mm``)
                    range (static)
``Int8Conv2d``      the same                                      the convolution in fp32 on the
                                                                  dequantized weight and fake-quantized
                                                                  input (no int8 conv kernel: simulated)
``FakeQuantized``   the fp32 layer it wraps (latent weights),     the wrapped layer on quantized weights
                    the observed input range                      (int8, binary or ternary) and, for
                                                                  int8, quantized inputs; STE gradients
``LowPrecision``    fp16 / bf16 weight, fp32 bias                 the layer in fp16 / bf16
==================  ===========================================  ======================================

:func:`rlsurgery.nets.size.weight_bytes` counts the bytes their weights take as deployed (the
``weight_bytes`` of an operation report): the stored tensors of the int8 and low-precision layers
(caches left out), and packed bits for the binary and ternary weights (``FakeQuantized.weight_bytes``).
In the int8 and low-precision layers the weights are fixed and the fp32 bias still trains (bias
correction after quantization); to train the weights, use ``quantization_aware_training``.
Gradients reach the layer's input through the dequantized weight (straight-through), so the biases
of earlier layers train too.
"""

from __future__ import annotations

from typing import Literal

import torch as th
import torch.nn.functional as F
from torch import nn

from rlsurgery.quantization.quantizers import (
    affine_parameters,
    binary_weight,
    dequantize_weight,
    fake_quantize_affine,
    fake_quantize_weight,
    packed_bytes,
    quantize_affine,
    quantize_weight,
    straight_through,
    ternary_weight,
)

WeightLayer = nn.Linear | nn.Conv2d
#: weight code -> (bits per weight as deployed, the fake-quantizer)
WEIGHT_CODES = {
    "int8": (8, fake_quantize_weight),
    "binary": (1, binary_weight),
    "ternary": (2, ternary_weight),
}
WeightCode = Literal["int8", "binary", "ternary"]


def _conv_settings(layer: nn.Conv2d) -> dict:
    return dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups)


def apply_layer(layer: WeightLayer, x: th.Tensor, weight: th.Tensor, bias: th.Tensor | None) -> th.Tensor:
    """What ``layer`` computes on ``x``, with ``weight`` and ``bias`` in place of its own."""
    if isinstance(layer, nn.Conv2d):
        if layer.padding_mode != "zeros":
            raise NotImplementedError("quantized convolutions support zero padding only")
        return F.conv2d(x, weight, bias, **_conv_settings(layer))
    return F.linear(x, weight, bias)


class InputRange(nn.Module):
    """The range [low, high] of a layer's input: set by calibration, or followed during training by
    an exponential moving average of each batch's min and max (``momentum``; the first batch sets it).

    The buffers are named ``running_low`` / ``running_high``, as BatchNorm's statistics are, so that
    SB3's target updates copy them into the target network with the weights (its
    ``batch_norm_stats``): a target that kept its first range would clip what the online one has
    learnt to see.
    """

    def __init__(self, momentum: float = 0.01) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("running_low", th.zeros(()))
        self.register_buffer("running_high", th.zeros(()))
        self.register_buffer("seen", th.zeros((), dtype=th.bool))

    @property
    def low(self) -> th.Tensor:
        return self.running_low

    @property
    def high(self) -> th.Tensor:
        return self.running_high

    def set(self, low: float | th.Tensor, high: float | th.Tensor) -> None:
        self.low.fill_(float(low))
        self.high.fill_(float(high))
        self.seen.fill_(True)

    def observe(self, x: th.Tensor) -> None:
        low, high = x.detach().min(), x.detach().max()
        if not bool(self.seen):
            self.set(low, high)
        else:
            self.low.lerp_(low, self.momentum)
            self.high.lerp_(high, self.momentum)

    def code(self) -> tuple[th.Tensor, th.Tensor]:
        """(scale, zero point) of the 8-bit affine code of the range."""
        return affine_parameters(self.low, self.high)


class Int8Weights(nn.Module):
    """Shared by the int8 layers: weight codes and row scales (one scale with ``per_tensor``;
    buffers), fp32 bias (trainable) and, with ``static``, the calibrated input range (otherwise the
    input is quantized per sample). Their deployed size is their stored tensors (the caches left out)."""

    def __init__(
        self, layer: WeightLayer, static: bool, weight: th.Tensor | None = None, per_tensor: bool = False
    ) -> None:
        super().__init__()
        codes, scales = quantize_weight(layer.weight if weight is None else weight, per_tensor=per_tensor)
        self.register_buffer("weight_codes", codes)
        self.register_buffer("weight_scale", scales)
        self.bias = None if layer.bias is None else nn.Parameter(layer.bias.detach().clone())
        self.static = static
        self.input_range = InputRange() if static else None

    def weight(self) -> th.Tensor:
        """The dequantized weight s_r · q (of W·diag(e) in an equalized Int8Linear)."""
        return dequantize_weight(self.weight_codes, self.weight_scale)


class Int8Linear(Int8Weights):
    """y = s_x s_r (q_x − z)·q_wᵀ + b with int8 codes and an int32 accumulator (``torch._int_mm``).

    Static: s_x, z from the calibrated input range (one per layer). Dynamic: symmetric, one s_x per
    sample, max |x| / 127, measured on the input at run time. With per-feature ``input_scale`` e
    (static only), the layer quantizes x / e and W·diag(e) instead: the same product, with inputs
    of different scales sharing the 8-bit range fairly (the weights' per-row scales absorb e).
    """

    def __init__(
        self, layer: nn.Linear, static: bool, input_scale: th.Tensor | None = None, per_tensor: bool = False
    ) -> None:
        scale = None if input_scale is None else input_scale.detach().float().to(layer.weight.device)
        weight = layer.weight.detach() * (1.0 if scale is None else scale)
        super().__init__(layer, static, weight=weight, per_tensor=per_tensor)
        self.register_buffer("input_scale", scale)  # None: not in the state
        self.in_features, self.out_features = layer.in_features, layer.out_features
        self.register_buffer("code_sums", self.weight_codes.int().sum(1), persistent=False)

    def _refresh_code_sums(self) -> None:
        """Σ_j q_rj, the zero-point correction; a cache of the codes, so redone when they change."""
        self.code_sums = self.weight_codes.int().sum(1)

    def _apply(self, fn, recurse=True):  # noqa: ANN001 (nn.Module's signature)
        out = super()._apply(fn, recurse)
        self._refresh_code_sums()
        return out

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._refresh_code_sums()

    def forward(self, x: th.Tensor) -> th.Tensor:
        flat = x.reshape(-1, self.in_features).float()
        if self.static:
            if self.input_scale is not None:
                flat = flat / self.input_scale
            scale, zero = self.input_range.code()
            codes = quantize_affine(flat, scale, zero).to(th.int8)
            total = th._int_mm(codes, self.weight_codes.t()) - zero.int() * self.code_sums
            y = total.float() * (scale * self.weight_scale)
        else:
            scale = (flat.abs().amax(1, keepdim=True) / 127.0).clamp_min(1e-12)
            codes = th.clamp(th.round(flat / scale), -127, 127).to(th.int8)
            y = th._int_mm(codes, self.weight_codes.t()).float() * (scale * self.weight_scale)
        if flat.requires_grad:  # gradients to the input through the dequantized weight
            y = straight_through(F.linear(flat, self.weight()), y)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)


class Int8Conv2d(Int8Weights):
    """The convolution on int8 weights and 8-bit inputs (static range, or per sample), computed in
    fp32 on their dequantized values: the size is int8's, the latency is simulated."""

    def __init__(self, layer: nn.Conv2d, static: bool, per_tensor: bool = False) -> None:
        super().__init__(layer, static, per_tensor=per_tensor)
        self.layer_settings = _conv_settings(layer)

    def forward(self, x: th.Tensor) -> th.Tensor:
        if self.static:
            scale, zero = self.input_range.code()
        else:
            low = x.detach().flatten(1).amin(1).clamp(max=0.0)
            high = x.detach().flatten(1).amax(1).clamp(min=0.0)
            scale, zero = (t.reshape(-1, 1, 1, 1) for t in affine_parameters(low, high))
        return F.conv2d(fake_quantize_affine(x, scale, zero), self.weight(), self.bias, **self.layer_settings)


def int8_layer(
    layer: WeightLayer, static: bool, input_scale: th.Tensor | None = None, per_tensor: bool = False
) -> Int8Linear | Int8Conv2d:
    """The int8 layer of ``layer`` (its weights quantized now, one scale per row or, with
    ``per_tensor``, per layer; ``input_scale``: a Linear's per-feature input scales, see
    :class:`Int8Linear`)."""
    if isinstance(layer, nn.Conv2d):
        return Int8Conv2d(layer, static, per_tensor)
    return Int8Linear(layer, static, input_scale, per_tensor)


class FakeQuantized(nn.Module):
    """A Linear or Conv2d ``layer`` trained on quantized weights (``code``: int8 per row, binary or
    ternary) and, for int8, on 8-bit inputs whose range an :class:`InputRange` follows in training
    mode; gradients are straight-through, so the latent fp32 weights train."""

    #: the layer inside is this one's, not another replacement's (see :mod:`rlsurgery.nets.replacement`)
    wraps_layer = True

    def __init__(self, layer: WeightLayer, code: WeightCode) -> None:
        super().__init__()
        self.layer, self.code = layer, code
        self.input_range = InputRange() if code == "int8" else None

    def quantized_weight(self) -> th.Tensor:
        return WEIGHT_CODES[self.code][1](self.layer.weight)

    def forward(self, x: th.Tensor) -> th.Tensor:
        if self.input_range is not None:
            if self.training:
                self.input_range.observe(x)
            x = fake_quantize_affine(x, *self.input_range.code())
        return apply_layer(self.layer, x, self.quantized_weight(), self.layer.bias)

    def weight_bytes(self) -> int:
        """Deployed size: the weights packed at their bits, a scale per row, the fp32 bias."""
        weight = self.layer.weight
        bias = 0 if self.layer.bias is None else self.layer.bias.numel() * 4
        return packed_bytes(weight.numel(), WEIGHT_CODES[self.code][0]) + 4 * weight.shape[0] + bias


class LowPrecision(nn.Module):
    """A Linear or Conv2d ``layer`` with its weight stored and applied in ``dtype`` (fp16 / bf16);
    the input is cast to ``dtype`` and the output back to fp32, to which the fp32 bias is added."""

    def __init__(self, layer: WeightLayer, dtype: th.dtype) -> None:
        super().__init__()
        self.dtype = dtype
        self.register_buffer("weight", layer.weight.detach().to(dtype))
        self.bias = None if layer.bias is None else nn.Parameter(layer.bias.detach().float().clone())
        self.layer_settings = _conv_settings(layer) if isinstance(layer, nn.Conv2d) else None

    def _apply(self, fn, recurse=True):  # noqa: ANN001 (nn.Module's signature)
        out = super()._apply(fn, recurse)
        self.weight = self.weight.to(self.dtype)  # a model-wide .float() / .to(dtype) keeps the precision
        return out

    def forward(self, x: th.Tensor) -> th.Tensor:
        low, weight = x.to(self.dtype), self.weight
        if self.dtype == th.bfloat16 and th.compiler.is_exporting():
            # ONNX Runtime's CPU kernels have no bf16 GEMM: in the exported graph the bf16 values are
            # multiplied in fp32 (the file keeps the bf16 weights) and the result rounded to bf16
            low, weight = low.float(), weight.float()
        if self.layer_settings is None:
            y = F.linear(low, weight)
        else:
            y = F.conv2d(low, weight, None, **self.layer_settings)
        y = y.to(self.dtype).to(x.dtype)
        if self.bias is not None:
            y = y + (self.bias if self.layer_settings is None else self.bias.reshape(-1, 1, 1))
        return y
