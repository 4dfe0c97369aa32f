"""The proof-breaking helper: a caught breakage passes, a missed one fails, patches are undone."""

from __future__ import annotations

import types

import pytest

from tests.breakage import assert_proof_fails_when, replaced, wrapped

surgery = types.SimpleNamespace(double=lambda x: 2 * x)


def check_double():
    assert surgery.double(3) == 6, "double(3) is not 6"


def test_a_caught_breakage_passes_and_is_undone():
    failure = assert_proof_fails_when(replaced(surgery, "double", lambda x: x), check_double)
    assert "double(3) is not 6" in str(failure)
    check_double()  # the real version is back
    assert_proof_fails_when(wrapped(surgery, "double", lambda f: lambda x: f(x) + 1), check_double)
    assert_proof_fails_when(
        replaced(surgery, "double", lambda x: x), lambda: pytest.fail("caught"), match="caught"
    )


def test_a_missed_breakage_fails_and_other_errors_propagate():
    with pytest.raises(pytest.fail.Exception, match="passed on a broken surgery"):
        assert_proof_fails_when(replaced(surgery, "double", lambda x: x + x), check_double)
    with pytest.raises(pytest.fail.Exception, match="but not with 'other reason'"):
        assert_proof_fails_when(replaced(surgery, "double", lambda x: x), check_double, match="other reason")

    def crash(x):
        raise TypeError("broken differently")

    with pytest.raises(TypeError, match="broken differently"):
        assert_proof_fails_when(replaced(surgery, "double", crash), check_double)
    check_double()
