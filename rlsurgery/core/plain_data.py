"""Plain-data encoding of what an SB3 model's ``data`` record holds, so a zip loads without unpickling.

SB3 writes every entry of a model's ``data`` that JSON cannot hold (spaces, the policy class,
schedules, the last observation, episode buffers, ...) as a base64 cloudpickle, and unpickling
runs whatever code the file names. rlsurgery writes each such entry a second time as plain JSON
data (:func:`encode`), and its ``load`` rebuilds them from that copy (:func:`decode`), handing
them to SB3 as ``custom_objects`` so that SB3 unpickles nothing.

What the encoding can hold, and what :func:`decode` can make from a file:

* JSON values, tuples, dicts with string keys, deques;
* numpy arrays and scalars of numeric or boolean dtype (bytes, never objects);
* Gymnasium's Box, Discrete, MultiDiscrete, MultiBinary, Dict and Tuple spaces;
* references to *classes* in ``stable_baselines3``, ``sb3_contrib``, ``rlsurgery``, ``torch`` and
  ``gymnasium`` that are torch modules, optimizers, SB3 buffers, spaces, enums or named tuples
  (a policy class, ``activation_fn``, ``optimizer_class``, ``replay_buffer_class``, ``TrainFreq``);
* instances of the value classes registered with :func:`plain_data_class` (SB3's schedules and
  rlsurgery's own), rebuilt from their attribute dict without running their ``__init__``.

Anything else (a lambda learning rate, an arbitrary object) cannot be encoded: :func:`encode`
raises :class:`PlainDataError`, and such a model loads only with ``trust=True``.

>>> import numpy as np
>>> decode(encode({"lr": 3e-4, "shape": (2, 3)}))
{'lr': 0.0003, 'shape': (2, 3)}
>>> decode(encode(np.arange(3, dtype=np.int16)))
array([0, 1, 2], dtype=int16)
"""

from __future__ import annotations

import base64
import collections
import enum
import importlib
from typing import Any, TypeVar

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.buffers import BaseBuffer
from stable_baselines3.common.utils import ConstantSchedule, FloatSchedule, LinearSchedule

#: the key that marks an encoded value in the JSON
TAG = "__plain__"
#: top-level packages whose classes a file may name
ALLOWED_PACKAGES = ("stable_baselines3", "sb3_contrib", "rlsurgery", "torch", "gymnasium")
#: what a named class must be (beside enums and named tuples)
_ALLOWED_BASES: tuple[type, ...] = (th.nn.Module, th.optim.Optimizer, BaseBuffer, gym.Space)
#: numpy dtype kinds an array may have: bool, signed, unsigned, float, complex
_ARRAY_KINDS = "biufc"

_VALUE_CLASSES: dict[str, type] = {}
T = TypeVar("T", bound=type)


class PlainDataError(ValueError):
    """A value that plain data cannot hold, or a file's plain data that cannot be decoded safely."""


def class_path(cls: type) -> str:
    """``module:qualname`` of ``cls``."""
    return f"{cls.__module__}:{cls.__qualname__}"


def plain_data_class(cls: T) -> T:
    """Register a small value class (a schedule): its instances are encoded as their attribute dict
    and rebuilt from it without calling ``__init__``. Every attribute must itself be plain data."""
    _VALUE_CLASSES[class_path(cls)] = cls
    return cls


for _schedule in (ConstantSchedule, FloatSchedule, LinearSchedule):
    plain_data_class(_schedule)


# ---------------------------------------------------------------------------------------- encode
def encode(value: Any) -> Any:
    """``value`` as JSON-ready plain data, or :class:`PlainDataError` naming what cannot be held."""
    if value is None or (isinstance(value, (bool, int, float, str)) and not isinstance(value, enum.Enum)):
        return value
    if isinstance(value, np.generic):
        return {TAG: "scalar", "dtype": value.dtype.str, "value": value.item()}
    if isinstance(value, np.ndarray):
        return _encode_array(value)
    if isinstance(value, np.dtype):
        return {TAG: "dtype", "name": value.str}
    if isinstance(value, th.device):
        return {TAG: "device", "name": str(value)}
    if isinstance(value, gym.Space):
        return _encode_space(value)
    if isinstance(value, enum.Enum):
        return {TAG: "enum", "class": _class_reference(type(value)), "value": encode(value.value)}
    if isinstance(value, tuple) and hasattr(type(value), "_fields"):
        return {
            TAG: "namedtuple",
            "class": _class_reference(type(value)),
            "fields": {k: encode(v) for k, v in value._asdict().items()},
        }
    if isinstance(value, tuple):
        return {TAG: "tuple", "items": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, collections.deque):
        return {TAG: "deque", "maxlen": value.maxlen, "items": [encode(v) for v in value]}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value) or TAG in value:
            raise PlainDataError(f"a dict with keys {list(value)[:5]} (plain data needs string keys)")
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, type):
        return {TAG: "class", "path": _class_reference(value)}
    path = class_path(type(value))
    if path in _VALUE_CLASSES:
        return {TAG: "object", "class": path, "state": {k: encode(v) for k, v in vars(value).items()}}
    raise PlainDataError(f"{type(value).__module__}.{type(value).__qualname__} object {value!r:.80}")


def _encode_array(array: np.ndarray) -> dict[str, Any]:
    if array.dtype.kind not in _ARRAY_KINDS:
        raise PlainDataError(f"a numpy array of dtype {array.dtype}")
    data = base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")
    return {TAG: "ndarray", "dtype": array.dtype.str, "shape": list(array.shape), "data": data}


def _encode_space(space: gym.Space) -> dict[str, Any]:
    if isinstance(space, gym.spaces.Box):
        return {TAG: "Box", "low": _encode_array(space.low), "high": _encode_array(space.high)}
    if isinstance(space, gym.spaces.Discrete):
        return {TAG: "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {TAG: "MultiDiscrete", "nvec": _encode_array(space.nvec), "start": _encode_array(space.start)}
    if isinstance(space, gym.spaces.MultiBinary):
        return {TAG: "MultiBinary", "n": encode(space.n)}
    if isinstance(space, gym.spaces.Dict):
        return {TAG: "Dict", "spaces": {k: _encode_space(s) for k, s in space.spaces.items()}}
    if isinstance(space, gym.spaces.Tuple):
        return {TAG: "Tuple", "spaces": [_encode_space(s) for s in space.spaces]}
    raise PlainDataError(f"a {type(space).__name__} space")


def _class_reference(cls: type) -> str:
    _check_class(cls, class_path(cls))
    if _resolve(class_path(cls)) is not cls:
        raise PlainDataError(f"class {class_path(cls)} (not reachable by its name)")
    return class_path(cls)


# ---------------------------------------------------------------------------------------- decode
def decode(data: Any) -> Any:
    """The value that :func:`encode` wrote as ``data``; :class:`PlainDataError` if ``data`` names
    anything outside what plain data may hold (see the module docstring)."""
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    if TAG not in data:
        return {k: decode(v) for k, v in data.items()}
    kind = data[TAG]
    try:
        return _DECODERS[kind](data)
    except KeyError as exc:
        if kind not in _DECODERS:
            raise PlainDataError(f"unknown plain-data kind {kind!r}") from None
        raise PlainDataError(f"{kind} without {exc}") from None
    except (TypeError, ValueError) as exc:
        if isinstance(exc, PlainDataError):
            raise
        raise PlainDataError(f"cannot rebuild a {kind}: {exc}") from None


def _decode_array(data: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(data["dtype"])
    if dtype.kind not in _ARRAY_KINDS:
        raise PlainDataError(f"a numpy array of dtype {dtype}")
    raw = base64.b64decode(data["data"], validate=True)
    return np.frombuffer(raw, dtype=dtype).reshape([int(n) for n in data["shape"]]).copy()


def _decode_scalar(data: dict[str, Any]) -> np.generic:
    dtype = np.dtype(data["dtype"])
    if dtype.kind not in _ARRAY_KINDS:
        raise PlainDataError(f"a numpy scalar of dtype {dtype}")
    return dtype.type(data["value"])


def _decode_class(data: dict[str, Any]) -> type:
    path = data["path"] if data[TAG] == "class" else data["class"]
    if not isinstance(path, str):
        raise PlainDataError(f"a class path must be a string, not {path!r:.60}")
    cls = _resolve(path)
    _check_class(cls, path)
    return cls


def _decode_object(data: dict[str, Any]) -> Any:
    path = data["class"]
    cls = _VALUE_CLASSES.get(path) if isinstance(path, str) else None
    if cls is None:
        raise PlainDataError(f"{path!r:.80} is not a registered plain-data value class")
    state = decode(data["state"])
    if not isinstance(state, dict):
        raise PlainDataError(f"the state of a {path} must be a dict")
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    return obj


def _decode_enum(data: dict[str, Any]) -> enum.Enum:
    cls = _decode_class(data)
    if not issubclass(cls, enum.Enum):
        raise PlainDataError(f"{class_path(cls)} is not an enum")
    return cls(decode(data["value"]))


def _decode_namedtuple(data: dict[str, Any]) -> tuple[Any, ...]:
    cls = _decode_class(data)
    if not (issubclass(cls, tuple) and hasattr(cls, "_fields")):
        raise PlainDataError(f"{class_path(cls)} is not a named tuple")
    fields = decode(data["fields"])
    if not isinstance(fields, dict) or set(fields) != set(cls._fields):  # type: ignore[attr-defined]
        raise PlainDataError(f"{class_path(cls)} needs the fields {cls._fields}")  # type: ignore[attr-defined]
    return cls(**fields)


def _decode_deque(data: dict[str, Any]) -> collections.deque[Any]:
    maxlen = data["maxlen"]
    if maxlen is not None and not isinstance(maxlen, int):
        raise PlainDataError("a deque's maxlen must be an integer")
    return collections.deque(decode(data["items"]), maxlen=maxlen)


def _space_array(data: dict[str, Any], name: str) -> np.ndarray:
    value = data[name]
    if not (isinstance(value, dict) and value.get(TAG) == "ndarray"):
        raise PlainDataError(f"the {name} of a {data[TAG]} space must be an array")
    return _decode_array(value)


def _decode_spaces(data: Any) -> Any:
    if not (isinstance(data, dict) and data.get(TAG) in _SPACES):
        raise PlainDataError("a composite space may hold only spaces")
    return _SPACES[data[TAG]](data)


def _box(low: np.ndarray, high: np.ndarray) -> gym.spaces.Box:
    if low.shape != high.shape or low.dtype != high.dtype:
        raise PlainDataError("a Box space's low and high must have one shape and dtype")
    return gym.spaces.Box(low, high, shape=low.shape, dtype=low.dtype)  # type: ignore[arg-type]


def _multi_discrete(nvec: np.ndarray, start: np.ndarray) -> gym.spaces.MultiDiscrete:
    return gym.spaces.MultiDiscrete(nvec, dtype=nvec.dtype, start=start)  # type: ignore[arg-type]


_SPACES = {
    "Box": lambda d: _box(_space_array(d, "low"), _space_array(d, "high")),
    "Discrete": lambda d: gym.spaces.Discrete(int(d["n"]), start=int(d["start"])),
    "MultiDiscrete": lambda d: _multi_discrete(_space_array(d, "nvec"), _space_array(d, "start")),
    "MultiBinary": lambda d: gym.spaces.MultiBinary(decode(d["n"])),
    "Dict": lambda d: gym.spaces.Dict({str(k): _decode_spaces(s) for k, s in d["spaces"].items()}),
    "Tuple": lambda d: gym.spaces.Tuple([_decode_spaces(s) for s in d["spaces"]]),
}

_DECODERS = {
    "ndarray": _decode_array,
    "scalar": _decode_scalar,
    "dtype": lambda d: np.dtype(_checked_dtype(d["name"])),
    "device": lambda d: th.device(str(d["name"])),
    "tuple": lambda d: tuple(decode(d["items"])),
    "deque": _decode_deque,
    "class": _decode_class,
    "enum": _decode_enum,
    "namedtuple": _decode_namedtuple,
    "object": _decode_object,
    **_SPACES,
}


def _checked_dtype(name: Any) -> str:
    if not isinstance(name, str) or np.dtype(name).kind not in _ARRAY_KINDS:
        raise PlainDataError(f"dtype {name!r:.40}")
    return name


# ---------------------------------------------------------------------------------------- classes
def _resolve(path: str) -> Any:
    """The object named ``module:qualname``, importing only modules of :data:`ALLOWED_PACKAGES`."""
    module_name, _, qualname = path.partition(":")
    if module_name.split(".")[0] not in ALLOWED_PACKAGES or not qualname:
        raise PlainDataError(f"class {path!r:.80} (only classes of {', '.join(ALLOWED_PACKAGES)})")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            if part.startswith("__") or part == "<locals>":
                raise AttributeError(part)
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        raise PlainDataError(f"class {path!r:.80} does not exist here") from None
    return obj


def _check_class(cls: Any, path: str) -> None:
    if not isinstance(cls, type) or cls.__module__.split(".")[0] not in ALLOWED_PACKAGES:
        raise PlainDataError(f"{path!r:.80} (only classes of {', '.join(ALLOWED_PACKAGES)})")
    if issubclass(cls, enum.Enum) or (issubclass(cls, tuple) and hasattr(cls, "_fields")):
        return
    if not issubclass(cls, _ALLOWED_BASES):
        raise PlainDataError(
            f"class {path} (a model file may name torch modules, optimizers, SB3 buffers, spaces, "
            "enums and named tuples)"
        )
