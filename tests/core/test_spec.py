from __future__ import annotations

import pytest

from rlsurgery.core.errors import RecipeError
from rlsurgery.core.spec import SurgerySpec, parse_spec, parse_specs, parse_value


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("double_q_learning", SurgerySpec("double_q_learning")),
        (" n_step_returns:n=5 ", SurgerySpec("n_step_returns", {"n": 5})),
        (
            "prioritized_replay:alpha=0.5,beta=1e-1",
            SurgerySpec("prioritized_replay", {"alpha": 0.5, "beta": 0.1}),
        ),
        (
            "x:sizes=[32, 32],flag=true,name=c51",
            SurgerySpec("x", {"sizes": [32, 32], "flag": True, "name": "c51"}),
        ),
        ({"key": "noisy_nets", "sigma0": 0.3}, SurgerySpec("noisy_nets", {"sigma0": 0.3})),
        ({"distributional_rl": {"variant": "qr"}}, SurgerySpec("distributional_rl", {"variant": "qr"})),
        ({"dueling_architecture": None}, SurgerySpec("dueling_architecture")),
    ],
)
def test_forms(spec, expected):
    assert parse_spec(spec) == expected


def test_string_round_trip():
    spec = SurgerySpec("x", {"a": 0.5, "sizes": [1, 2], "flag": False})
    assert parse_spec(str(spec)) == spec


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("", "empty surgery spec"),
        ("prioritized_replay:alpha", "malformed parameter 'alpha'"),
        ({"a": 1, "b": 2}, "needs a 'key' entry"),
        ({"noisy_nets": 3}, "parameters must be a mapping"),
        (42, "cannot read a surgery spec"),
    ],
)
def test_malformed(spec, match):
    with pytest.raises(RecipeError, match=match):
        parse_spec(spec)


def test_parse_specs_accepts_none_one_or_many():
    assert parse_specs(None) == []
    assert parse_specs("a") == [SurgerySpec("a")]
    assert parse_specs(["a", {"b": {"x": 1}}]) == [SurgerySpec("a"), SurgerySpec("b", {"x": 1})]


def test_parse_value_numbers():
    assert parse_value("3") == 3
    assert parse_value("-2.5e-4") == -2.5e-4
    assert parse_value("hard") == "hard"
