"""Surgery specs: one parser for Python, YAML and the command line.

A spec names a surgery and its parameters in one of these forms::

    "double_q_learning"                                  # a key
    "prioritized_replay:alpha=0.5,beta=0.4"              # key:param=value,... (CLI)
    {"key": "prioritized_replay", "alpha": 0.5}          # mapping with ``key``
    {"prioritized_replay": {"alpha": 0.5}}               # one-entry mapping (YAML style)

Values in the string form are read as YAML scalars/lists, so ``0.5`` is a float,
``true`` a bool, ``[64,64]`` a list and ``c51`` a string.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from rlsurgery.core.errors import RecipeError


@dataclass(frozen=True)
class SurgerySpec:
    """A parsed spec: the catalog key and the raw (not yet validated) parameters."""

    key: str
    params: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """``{"key": key, **params}``."""
        return {"key": self.key, **self.params}

    def __str__(self) -> str:
        if not self.params:
            return self.key
        return self.key + ":" + ",".join(f"{k}={_format_value(v)}" for k, v in self.params.items())


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_format_value(v) for v in value) + "]"
    return str(value)


def _split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside brackets and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def parse_value(text: str) -> Any:
    """Read one command-line value: YAML scalar or list, numbers like ``1e-3`` included.

    >>> parse_value("0.5"), parse_value("1e-3"), parse_value("[64, 64]"), parse_value("c51")
    (0.5, 0.001, [64, 64], 'c51')
    """
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            return value
    return value


def parse_spec(spec: Any) -> SurgerySpec:
    """Parse one spec (string, mapping or :class:`SurgerySpec`).

    >>> parse_spec("prioritized_replay:alpha=0.5,beta=0.4")
    SurgerySpec(key='prioritized_replay', params={'alpha': 0.5, 'beta': 0.4})
    >>> parse_spec({"distributional_rl": {"variant": "qr"}})
    SurgerySpec(key='distributional_rl', params={'variant': 'qr'})
    """
    if isinstance(spec, SurgerySpec):
        return spec
    if hasattr(spec, "key") and hasattr(spec, "spec") and callable(spec.spec):  # a Surgery instance
        data = spec.spec()
        return SurgerySpec(data.pop("key"), data)
    if isinstance(spec, str):
        text = spec.strip()
        if not text:
            raise RecipeError("empty surgery spec")
        key, _, rest = text.partition(":")
        params: dict[str, Any] = {}
        for item in _split_top_level(rest):
            name, eq, value = item.partition("=")
            if not eq or not name.strip():
                raise RecipeError(
                    f"{key.strip()}: malformed parameter {item!r} in spec {spec!r}; expected name=value"
                )
            params[name.strip()] = parse_value(value.strip())
        return SurgerySpec(key.strip(), params)
    if isinstance(spec, Mapping):
        if "key" in spec:
            params = {k: v for k, v in spec.items() if k != "key"}
            return SurgerySpec(str(spec["key"]), dict(params))
        if len(spec) == 1:
            ((key, params),) = spec.items()
            if params is None:
                params = {}
            if not isinstance(params, Mapping):
                raise RecipeError(f"{key}: parameters must be a mapping, got {params!r}")
            return SurgerySpec(str(key), dict(params))
        raise RecipeError(f"a surgery mapping needs a 'key' entry or exactly one entry, got {dict(spec)!r}")
    raise RecipeError(f"cannot read a surgery spec from {spec!r} ({type(spec).__name__})")


def parse_specs(specs: Any) -> list[SurgerySpec]:
    """Parse ``None``, one spec, or a list of specs."""
    if specs is None:
        return []
    if isinstance(specs, (str, Mapping, SurgerySpec)) or hasattr(specs, "spec"):
        return [parse_spec(specs)]
    if isinstance(specs, Iterable):
        return [parse_spec(s) for s in specs]
    raise RecipeError(f"cannot read surgeries from {specs!r}")
