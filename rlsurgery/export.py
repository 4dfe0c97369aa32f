"""Export a model's greedy policy to ONNX, and run it with ONNX Runtime.

The graph takes a batch of observations (input ``obs``, the observation space's dtype, any batch
size) and gives two outputs:

=================  =====================================================================
``action``         what ``model.predict(obs, deterministic=True)`` returns: the arg-max
                   action (discrete), or the deterministic action in the env's bounds
                   (squashed actions rescaled, the others clipped, as SB3 does)
``q_values``,      what the acting network computes before that: Q-values (DQN family),
``logits`` or      action logits (discrete actor-critics), or the deterministic action in
``mean_action``    the policy's own scale (the Gaussian mean, or tanh of it for SAC / TD3)
=================  =====================================================================

Preprocessing (image scaling, flattening) is in the graph, so the file is the whole policy.
Surgeries' layers export as what they compute: a LoRA layer merged into one matrix W₀ + (α/r)·B·A
(``merge=False`` keeps its factors), an SVD-factorised layer as its two factors, an int8 layer
with its int8 codes in the file and its integer product computed exactly in fp32 by ONNX Runtime
(see :func:`_int8_matmul`), a low-precision layer with its fp16 / bf16 weights.

>>> from stable_baselines3 import DQN
>>> import numpy as np, tempfile, pathlib
>>> model = DQN("MlpPolicy", "CartPole-v1", policy_kwargs=dict(net_arch=[8]))
>>> path = export(model, pathlib.Path(tempfile.mkdtemp()) / "policy.onnx")
>>> obs = np.zeros((3, 4), dtype=np.float32)
>>> actions, q_values = OnnxPolicy(path).run(obs)
>>> bool((actions == model.predict(obs, deterministic=True)[0]).all()), q_values.shape
(True, (3, 2))
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.nets.data import space_samples
from rlsurgery.nets.layout import layout_of
from rlsurgery.nets.modules import modes_kept, replace_modules

#: the output after ``action``, by what the acting network computes
VALUE_NAMES = {"q": "q_values", "distribution": "logits", "actor": "mean_action"}


class GreedyPolicy(nn.Module):
    """obs → (action, values): a model's greedy policy as one module (what :func:`export` traces)."""

    def __init__(self, model: BaseAlgorithm, policy: nn.Module | None = None) -> None:
        super().__init__()
        self.policy = model.policy if policy is None else policy
        self.layout = layout_of(model)
        self.action_space = model.action_space
        self.discrete = isinstance(model.action_space, spaces.Discrete)
        if isinstance(model.action_space, spaces.Box):
            self.register_buffer("low", th.as_tensor(model.action_space.low, dtype=th.float32))
            self.register_buffer("high", th.as_tensor(model.action_space.high, dtype=th.float32))
        self.squashed = bool(getattr(model.policy, "squash_output", False))

    @property
    def value_name(self) -> str:
        kind = "actor" if self.layout.kind == "distribution" and not self.discrete else self.layout.kind
        return VALUE_NAMES[kind]

    def forward(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        values = self.layout.outputs(self.policy, obs, self.discrete)
        if self.discrete:
            return values.argmax(dim=1), values
        if self.squashed:  # [-1, 1] → [low, high]
            return self.low + (values + 1.0) * 0.5 * (self.high - self.low), values
        return th.maximum(th.minimum(values, self.high), self.low), values


def _int8_matmul(a, b):  # noqa: ANN001 (onnxscript values)
    """``torch._int_mm`` (int8 × int8 → int32) in ONNX: the int8 codes cast to float, multiplied, the
    sums cast back. Exact while the sums stay below 2²⁴ (up to 1032 inputs a row; beyond, fp32
    rounding); the weights are int8 in the file. Not ``MatMulInteger``: ONNX Runtime's default graph
    optimizations fuse it into a u8s8 kernel that saturates (wrong outputs on x86), and on small
    layers it is slower than the fp32 GEMM."""
    from onnxscript import FLOAT, INT32
    from onnxscript import opset18 as op

    return op.Cast(op.MatMul(op.Cast(a, to=FLOAT.dtype), op.Cast(b, to=FLOAT.dtype)), to=INT32.dtype)


def check_exportable(model: BaseAlgorithm) -> None:
    """Raise :class:`IncompatibleSurgeryError` for what the exporter does not cover."""
    space = model.observation_space
    if not isinstance(space, spaces.Box):
        raise IncompatibleSurgeryError(
            f"export: observations must be a Box (an array); {type(model).__name__}'s are "
            f"{type(space).__name__} (flatten them with a wrapper first)"
        )
    if not isinstance(model.action_space, (spaces.Discrete, spaces.Box)):
        raise IncompatibleSurgeryError(
            f"export: actions must be Discrete or Box; {type(model).__name__}'s are "
            f"{type(model.action_space).__name__}"
        )


def merged_policy(model: BaseAlgorithm) -> nn.Module:
    """The model's policy with every layer that can fold itself into one (a LoRA layer: W₀ + (α/r)·B·A,
    through its ``merged()``) folded, in a copy; the policy itself where none can."""
    if not any(callable(getattr(m, "merged", None)) for m in model.policy.modules()):
        return model.policy
    policy = copy.deepcopy(model.policy)
    replace_modules(
        policy, lambda _name, m: callable(getattr(m, "merged", None)), lambda _name, m: m.merged()
    )
    return policy


def export(
    model: BaseAlgorithm, path: str | Path, opset: int = 18, merge: bool = True, verbose: int = 0
) -> Path:
    """Write ``model``'s greedy policy as an ONNX file (see the module docstring for its inputs and
    outputs); the batch size is free.

    :param model: a plain SB3 or surgical model, as trained or operated (left as it was: its
        training mode is restored)
    :param path: the ``.onnx`` file to write (its folder is created)
    :param opset: the ONNX opset
    :param merge: fold the layers that can be folded into one matrix (LoRA) before export
    :param verbose: 1 to show the exporter's own messages
    :return: the path written
    """
    check_exportable(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")  # an existing file is replaced only once all went well
    graph = GreedyPolicy(model, merged_policy(model) if merge else None)
    example = th.as_tensor(space_samples(model.observation_space, 2), device=model.device)
    quiet = contextlib.nullcontext() if verbose else _quiet()
    validating = th.distributions.Distribution._validate_args
    th.distributions.Distribution.set_default_validate_args(False)  # its checks are data-dependent
    try:
        with quiet, th.no_grad(), modes_kept(graph.policy):
            th.onnx.export(
                graph,
                (example,),
                str(partial),
                input_names=["obs"],
                output_names=["action", graph.value_name],
                dynamic_shapes=({0: th.export.Dim("batch", min=1)},),
                opset_version=opset,
                custom_translation_table={th.ops.aten._int_mm.default: _int8_matmul},
                dynamo=True,
                optimize=False,  # the optimizer would fold the int8 codes' Cast into fp32 initializers
                verbose=bool(verbose),
            )
        _tidy(partial)
        partial.replace(path)
    finally:
        th.distributions.Distribution.set_default_validate_args(validating)
        partial.unlink(missing_ok=True)
    return path


def parity(model: BaseAlgorithm, path: str | Path, n: int = 100, seed: int = 0) -> dict[str, float]:
    """Compare the exported policy at ``path`` with ``model.predict`` on ``n`` observations sampled
    from the observation space (seeded): the share of equal actions (discrete) or the largest
    action difference (continuous), and the largest difference of the values output.

    :return: ``{"observations", "action_agreement" | "action_max_abs_diff", "values_max_abs_diff"}``
    """
    obs = space_samples(model.observation_space, n, seed)
    action, values = OnnxPolicy(path).run(obs)
    expected = model.predict(obs, deterministic=True)[0]
    graph = GreedyPolicy(model)
    with th.no_grad(), modes_kept(model.policy):
        reference = graph(model.policy.obs_to_tensor(obs)[0])[1].cpu().numpy()
    out: dict[str, float] = {"observations": n}
    if isinstance(model.action_space, spaces.Discrete):
        out["action_agreement"] = float(np.mean(action.reshape(-1) == np.asarray(expected).reshape(-1)))
    else:
        out["action_max_abs_diff"] = float(np.abs(action - np.asarray(expected).reshape(action.shape)).max())
    out["values_max_abs_diff"] = float(np.abs(values - reference).max())
    return out


def _tidy(path: Path) -> None:
    """Optimize the exported graph without folding constants (folding would turn the int8 codes'
    Cast into fp32 initializers: 4× the bytes), and drop what a runtime does not need: the
    exporter's per-node metadata (source stack traces) and the intermediate shapes (ONNX Runtime
    infers them)."""
    import onnx
    import onnxscript.optimizer

    model = onnxscript.optimizer.optimize(onnx.load(str(path)), input_size_limit=1, output_size_limit=1)
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    del model.graph.value_info[:]
    onnx.save(model, str(path))


@contextlib.contextmanager
def _quiet():
    """Silence the exporter's progress prints, warnings and log lines."""
    loggers = [
        logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")
    ]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


class OnnxPolicy:
    """An exported policy in an ONNX Runtime session (CPU, one thread unless told otherwise).

    ``run(obs)`` gives ``(action, values)`` for a batch of observations; ``predict(obs)`` mimics
    SB3's ``model.predict`` (one observation or a batch; returns ``(action, None)``).
    """

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0]
        self.dtype = np.dtype(_ONNX_DTYPES.get(self.input.type, "float32"))
        self.shape = tuple(self.input.shape[1:])
        self.value_name = self.session.get_outputs()[1].name

    def run(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        action, values = self.session.run(None, {self.input.name: np.asarray(obs, dtype=self.dtype)})
        return action, values

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> tuple[np.ndarray, None]:
        obs = np.asarray(obs, dtype=self.dtype)
        single = obs.shape == self.shape
        action, _ = self.run(obs[None] if single else obs)
        return (action[0] if single else action), None


_ONNX_DTYPES = {"tensor(float)": "float32", "tensor(uint8)": "uint8", "tensor(double)": "float64"}
