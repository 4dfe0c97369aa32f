from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from rlsurgery.core.errors import ParameterError
from rlsurgery.core.params import build_params, describe_params, param, params_to_dict


@dataclass
class Demo:
    alpha: float = param(0.6, "exponent", ge=0.0, le=1.0)
    n: int = param(3, "count", ge=1)
    variant: Literal["a", "b"] = param("a", "which")
    sizes: list[int] = param([64, 64], "hidden sizes")
    interval: int | None = param(None, "optional", ge=1)
    flag: bool = param(False, "a switch")

    def check(self) -> None:
        if self.variant == "b" and self.n < 2:
            raise ValueError(f"parameter 'n' must be >= 2 with variant 'b' (got {self.n})")


def test_defaults_and_coercion():
    p = build_params(Demo, "demo", {"alpha": 1, "n": 4.0, "sizes": [8]})
    assert p == Demo(alpha=1.0, n=4, variant="a", sizes=[8], interval=None, flag=False)
    assert isinstance(p.alpha, float) and isinstance(p.n, int)


def test_list_defaults_are_not_shared():
    a, b = build_params(Demo, "demo", {}), build_params(Demo, "demo", {})
    a.sizes.append(1)
    assert b.sizes == [64, 64]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"alpha": 1.5}, "demo: parameter 'alpha' must be <= 1.0 (got 1.5)"),
        ({"alpha": -0.1}, "demo: parameter 'alpha' must be >= 0.0 (got -0.1)"),
        ({"n": 0}, "demo: parameter 'n' must be >= 1 (got 0)"),
        ({"n": 2.5}, "demo: parameter 'n' must be an integer (got 2.5)"),
        ({"n": True}, "demo: parameter 'n' must be an integer (got True)"),
        ({"alpha": "x"}, "demo: parameter 'alpha' must be a number (got 'x')"),
        ({"variant": "c"}, "demo: parameter 'variant' must be one of 'a', 'b' (got 'c')"),
        ({"flag": 1}, "demo: parameter 'flag' must be true or false (got 1)"),
        ({"sizes": 5}, "demo: parameter 'sizes' must be a list of int (got 5)"),
        ({"interval": 0}, "demo: parameter 'interval' must be >= 1 (got 0)"),
        ({"variant": "b", "n": 1}, "demo: parameter 'n' must be >= 2 with variant 'b' (got 1)"),
    ],
)
def test_bad_values_name_surgery_and_field(raw, message):
    with pytest.raises(ParameterError) as info:
        build_params(Demo, "demo", raw)
    assert str(info.value) == message


def test_unknown_parameter_suggests_close_match():
    with pytest.raises(ParameterError, match=r"demo: unknown parameter 'alpah'; did you mean 'alpha'\?"):
        build_params(Demo, "demo", {"alpah": 0.5})


def test_describe_and_dict():
    described = {d["name"]: d for d in describe_params(Demo)}
    assert described["alpha"]["bounds"] == {"ge": 0.0, "le": 1.0}
    assert described["variant"]["type"] == "'a' | 'b'"
    assert described["sizes"]["default"] == [64, 64]
    assert params_to_dict(build_params(Demo, "demo", {}))["alpha"] == 0.6
