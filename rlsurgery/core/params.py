"""Typed, validated surgery parameters.

Each surgery declares its parameters as a dataclass whose fields are made with
:func:`param`: a default, a one-line doc and optional bounds or choices. The same
dataclass serves Python keyword arguments, YAML mappings and ``key:p=v`` command-line
specs; :func:`build_params` is the one place where values are coerced and checked, so
every bad value fails the same way, naming the surgery and the field.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from rlsurgery.core.errors import ParameterError

P = TypeVar("P")

# Upper bounds of the parameters that size an allocation, so that a slip such as ``n=1000000000``
# fails by name when the surgery is made instead of asking for hundreds of GiB mid-run. Each
# parameter shows its range in ``rlsurgery catalog`` and docs/surgeries.md; a bound that depends on
# the agent (n-step n <= buffer_size) is checked by the surgery's ``validate``.
MAX_WIDTH = 16_384
"""units of one hidden layer or feature vector (a square layer of 16k units is 1 GiB of float32)"""
MAX_BATCH = 65_536
"""samples in one minibatch, or in one batch a surgery measures the networks on"""
MAX_SAMPLES = 1_000_000
"""observations or transitions a surgery collects and keeps in memory"""
MAX_EPISODES = 100_000
"""episodes a surgery rolls out and keeps"""
MAX_COPIES = 100
"""copies of a network, of its gradients or of its layers kept at once (snapshots, peers, added layers)"""
MAX_SUPPORT = 1024
"""atoms or quantiles of a return distribution (the quantile loss holds batch × N² values)"""
MAX_N_STEP = 1000
"""rewards summed by an n-step return (the buffer gathers a batch × n array of indices per sample)"""

_MISSING = dataclasses.MISSING


def param(
    default: Any = _MISSING,
    doc: str = "",
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Any:
    """A dataclass field for a surgery parameter.

    :param default: default value (lists are copied per instance)
    :param doc: one line shown in ``rlsurgery catalog`` and docs/surgeries.md
    :param ge: inclusive lower bound (numbers)
    :param gt: exclusive lower bound
    :param le: inclusive upper bound
    :param lt: exclusive upper bound
    """
    metadata = {"doc": doc, "ge": ge, "gt": gt, "le": le, "lt": lt}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def check_order(params: Any, low: str, high: str) -> None:
    """Raise ``ValueError`` unless field ``low`` < field ``high`` (a step window, a range of rates …)."""
    a, b = getattr(params, low), getattr(params, high)
    if a >= b:
        raise ValueError(f"{low!r} must be < {high!r} (got {a} ≥ {b})")


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if get_origin(tp) in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if tp is type(None):
        return "None"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any) -> Any:
    """Coerce ``value`` to the annotated type ``tp`` or raise ``TypeError``/``ValueError``."""
    origin = get_origin(tp)
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise ValueError(f"must be one of {', '.join(repr(a) for a in get_args(tp))}")
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg)
            except (TypeError, ValueError) as exc:
                errors.append(str(exc))
        raise TypeError(f"must be {_type_name(tp)}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"must be a list of {_type_name(get_args(tp)[0])}")
        (item_tp,) = get_args(tp)[:1]
        return origin(_coerce(v, item_tp) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise TypeError("must be true or false")
    if tp is int:
        if isinstance(value, bool):
            raise TypeError("must be an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeError("must be an integer")
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError("must be a number")
        return float(value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise TypeError("must be a string")
    if tp is Any:
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise TypeError(f"must be {_type_name(tp)}")
    return value


def check_bounds(value: Any, meta: typing.Mapping[str, Any]) -> None:
    """Raise ``ValueError`` when ``value`` breaks the bounds in a field's metadata."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    if meta.get("ge") is not None and not value >= meta["ge"]:
        raise ValueError(f"must be >= {meta['ge']}")
    if meta.get("gt") is not None and not value > meta["gt"]:
        raise ValueError(f"must be > {meta['gt']}")
    if meta.get("le") is not None and not value <= meta["le"]:
        raise ValueError(f"must be <= {meta['le']}")
    if meta.get("lt") is not None and not value < meta["lt"]:
        raise ValueError(f"must be < {meta['lt']}")


def build_params(params_cls: type[P], key: str, raw: typing.Mapping[str, Any]) -> P:
    """Validate ``raw`` against the dataclass ``params_cls`` and return an instance.

    Raises :class:`ParameterError` naming the surgery ``key`` and the offending field.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Demo:
    ...     alpha: float = param(0.6, "priority exponent", ge=0.0, le=1.0)
    >>> build_params(Demo, "demo", {"alpha": 1})
    Demo(alpha=1.0)
    >>> build_params(Demo, "demo", {"alpha": 2.0})
    Traceback (most recent call last):
    ...
    rlsurgery.core.errors.ParameterError: demo: parameter 'alpha' must be <= 1.0 (got 2.0)
    """
    fields = {f.name: f for f in dataclasses.fields(params_cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(params_cls)
    unknown = [name for name in raw if name not in fields]
    if unknown:
        name = unknown[0]
        close = difflib.get_close_matches(name, list(fields), n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        valid = ", ".join(fields) if fields else "none"
        raise ParameterError(f"{key}: unknown parameter {name!r}{hint} (valid parameters: {valid})")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        f = fields[name]
        try:
            coerced = _coerce(value, hints[name])
            check_bounds(coerced, f.metadata)
        except (TypeError, ValueError) as exc:
            raise ParameterError(f"{key}: parameter {name!r} {exc} (got {value!r})") from None
        values[name] = coerced
    for name, f in fields.items():
        if name not in values and f.default is _MISSING and f.default_factory is _MISSING:
            raise ParameterError(f"{key}: parameter {name!r} is required")
    instance = params_cls(**values)
    check = getattr(instance, "check", None)
    if check is not None:
        try:
            check()
        except ValueError as exc:
            raise ParameterError(f"{key}: {exc}") from None
    return instance


def describe_params(params_cls: type | None) -> list[dict[str, Any]]:
    """Name, type, default and doc of each parameter, for the catalog and the docs."""
    if params_cls is None:
        return []
    hints = typing.get_type_hints(params_cls)
    out = []
    for f in dataclasses.fields(params_cls):
        if f.default is not _MISSING:
            default = f.default
        elif f.default_factory is not _MISSING:
            default = f.default_factory()
        else:
            default = None
        bounds = {k: f.metadata.get(k) for k in ("ge", "gt", "le", "lt") if f.metadata.get(k) is not None}
        out.append(
            {
                "name": f.name,
                "type": _type_name(hints[f.name]),
                "default": default,
                "doc": f.metadata.get("doc", ""),
                **({"bounds": bounds} if bounds else {}),
            }
        )
    return out


def params_to_dict(params: Any) -> dict[str, Any]:
    """Plain-dict form of a params dataclass (JSON friendly; tuples become lists)."""
    if params is None:
        return {}
    out = {}
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out
