"""Surgery state: what a surgery remembers between calls, kept in one saved container on the agent.

A surgery with mutable state declares it as a dataclass (``State``, defaults for every field) and
reads it as ``self.state(agent)``; the agent keeps every surgery's state in
``agent.surgery_state`` (key -> dataclass), and ``save``/``load`` write and restore it as plain data,
so that a loaded model resumes with its schedules, counters and reports. A field marked
``transient()`` (e.g. an in-memory snapshot of the whole network) is not saved and starts from its
default after ``load``.

>>> from dataclasses import dataclass
>>> @dataclass
... class Counter:
...     updates: int = 0
...     last: list = transient(list)
>>> data = state_to_data(Counter(updates=3, last=[1]))
>>> data, state_from_data(Counter, data)
({'updates': 3}, Counter(updates=3, last=[]))
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch as th

_TRANSIENT = "rlsurgery_transient"


def transient(default_factory: Any = None, default: Any = None) -> Any:
    """A state field that is not saved (it starts from its default after ``load``)."""
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata={_TRANSIENT: True})
    return dataclasses.field(default=default, metadata={_TRANSIENT: True})


def to_data(value: Any) -> Any:
    """``value`` as JSON-able plain data: tensors and arrays as tagged lists, containers recursively."""
    if isinstance(value, th.Tensor):
        return {"__tensor__": value.detach().cpu().tolist(), "dtype": str(value.dtype).removeprefix("torch.")}
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): to_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_data(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"surgery state holds a {type(value).__name__}, which is not plain data")


def from_data(data: Any) -> Any:
    """The inverse of :func:`to_data`."""
    if isinstance(data, dict):
        if "__tensor__" in data:
            return th.tensor(data["__tensor__"], dtype=getattr(th, data["dtype"]))
        if "__ndarray__" in data:
            return np.asarray(data["__ndarray__"], dtype=data["dtype"])
        return {k: from_data(v) for k, v in data.items()}
    if isinstance(data, list):
        return [from_data(v) for v in data]
    return data


def state_to_data(state: Any) -> dict[str, Any]:
    """The saved fields of a state dataclass, as plain data."""
    return {
        f.name: to_data(getattr(state, f.name))
        for f in dataclasses.fields(state)
        if not f.metadata.get(_TRANSIENT)
    }


def state_from_data(cls: type, data: dict[str, Any]) -> Any:
    """A ``cls`` state from saved data (fields it no longer has are ignored, new ones default)."""
    names = {f.name for f in dataclasses.fields(cls) if not f.metadata.get(_TRANSIENT)}
    return cls(**{k: from_data(v) for k, v in data.items() if k in names})


class SurgeryStates(dict):
    """Surgery key -> its state dataclass, on one agent (``agent.surgery_state``).

    States loaded from a zip wait in ``saved`` (plain data) until their surgery asks for them.
    """

    def __init__(self, saved: dict[str, dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.saved: dict[str, dict[str, Any]] = dict(saved or {})

    def get_or_create(self, key: str, cls: type) -> Any:
        """The state of ``key``: the live one, the saved one restored, or a fresh ``cls()``."""
        state = self.get(key)
        if state is None:
            saved = self.saved.pop(key, None)
            state = self[key] = cls() if saved is None else state_from_data(cls, saved)
        return state

    def to_data(self) -> dict[str, dict[str, Any]]:
        """Every state as plain data (what ``save`` writes), unclaimed saved ones included."""
        return {**self.saved, **{key: state_to_data(state) for key, state in self.items()}}


#: the attribute a saved zip keeps the states in (plain data)
SAVED_ATTRIBUTE = "surgery_state_data"


def states_of(agent: Any) -> SurgeryStates:
    """The state container of ``agent``, created on first use from what a loaded zip held."""
    states = agent.__dict__.get("surgery_state")
    if not isinstance(states, SurgeryStates):
        saved = agent.__dict__.pop(SAVED_ATTRIBUTE, None)
        states = agent.__dict__["surgery_state"] = SurgeryStates(saved if isinstance(saved, dict) else None)
    return states


@dataclasses.dataclass
class ResultState:
    """The state of a surgery whose only memory is what it measured or did last (a report)."""

    result: dict[str, Any] = dataclasses.field(default_factory=dict)
    """e.g. the sparsity reached, the parameter counts before and after, the norms seen"""
