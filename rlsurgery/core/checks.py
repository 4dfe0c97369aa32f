"""Range checks of the integer settings of runs and studies (steps, seeds, episodes, workers, ...).

The Python API and the command line use the same check, so both refuse a bad value before any
work, with the same words:

>>> check_int(64, "steps", 1)
64
>>> check_int(0, "steps", 1)
Traceback (most recent call last):
...
rlsurgery.core.errors.SettingError: steps must be an integer >= 1 (got 0)
"""

from __future__ import annotations

import numbers
from typing import Any

from rlsurgery.core.errors import SettingError, SurgeryError

MAX_SEED = 2**31 - 1
"""The largest seed: numpy takes seeds below 2**32, and runs add offsets (evaluation envs, vector envs)."""


def int_range(minimum: int, maximum: int | None = None) -> str:
    """``">= 1"`` or ``"from 0 to 9"``: the allowed range, in messages."""
    return f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"


def int_problem(value: Any, minimum: int, maximum: int | None = None) -> str | None:
    """What is wrong with ``value`` as an integer in ``minimum..maximum`` (None: nothing)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return f"must be an integer {int_range(minimum, maximum)}"
    if value < minimum or (maximum is not None and value > maximum):
        return f"must be an integer {int_range(minimum, maximum)}"
    return None


def check_int(
    value: Any,
    name: str,
    minimum: int,
    maximum: int | None = None,
    error: type[SurgeryError] = SettingError,
) -> int:
    """``value`` as an ``int`` if it is an integer in ``minimum..maximum``.

    :raises SettingError: (or ``error``) naming ``name``, the range and the value
    """
    problem = int_problem(value, minimum, maximum)
    if problem is not None:
        raise error(f"{name} {problem} (got {value!r})")
    return int(value)


def check_optional_int(
    value: Any,
    name: str,
    minimum: int,
    maximum: int | None = None,
    error: type[SurgeryError] = SettingError,
) -> int | None:
    """:func:`check_int`, with ``None`` (the default) allowed."""
    return None if value is None else check_int(value, name, minimum, maximum, error)
