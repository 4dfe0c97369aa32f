"""A proof is a proof only if it fails on a no-op: run a proof against a deliberately broken surgery.

Write the body of a proof as a plain ``check_…`` function, call it from the proof test, and call
it again from a companion test under a broken version of the surgery (returns its input, drops a
term, uses plain noise, skips the bonus …)::

    from rlsurgery.exploration import noisy_nets
    from tests.breakage import assert_proof_fails_when, replaced

    def check_noise_is_factorised():
        ...  # asserts

    def test_noise_is_factorised():  # the proof named in the catalog
        check_noise_is_factorised()

    def test_noise_proof_fails_on_plain_gaussian_noise():
        plain = lambda size, device: th.randn(size, device=device)
        assert_proof_fails_when(replaced(noisy_nets, "scaled_noise", plain), check_noise_is_factorised)

A breakage is any callable that takes a :class:`pytest.MonkeyPatch` and patches the surgery
(:func:`replaced` and :func:`wrapped` build the common ones); every patch is undone afterwards,
whatever happens. Patch the attribute where the surgery *looks it up* (the module global or the
class method), and have the check reach the surgery through the agent or the module, not through
a name it imported itself, or the breakage never reaches the code under test.

Only a failed assertion (``assert``, ``pytest.fail``, ``pytest.raises`` that did not raise,
``np.testing`` / ``th.testing`` comparisons) counts as "the proof caught it". Any other exception
propagates: a breakage that merely crashes the code proves nothing about the proof.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

#: patches a surgery into a broken version
Breakage = Callable[[pytest.MonkeyPatch], object]

#: what a failing proof raises
_FAILURES = (AssertionError, pytest.fail.Exception)


def assert_proof_fails_when(
    breakage: Breakage, check: Callable[..., object], *args: Any, match: str | None = None, **kwargs: Any
) -> BaseException:
    """Run ``check(*args, **kwargs)`` with the surgery broken by ``breakage``; it must fail.

    :param breakage: patches the surgery through the monkeypatch it is given (undone afterwards)
    :param check: the body of the proof test
    :param match: a regex the failure message must contain (``re.search``), to be sure the proof
        failed for the reason it should
    :return: the failure the check raised
    """
    with pytest.MonkeyPatch.context() as monkeypatch:
        breakage(monkeypatch)
        try:
            check(*args, **kwargs)
        except _FAILURES as failure:
            if match is not None and not re.search(match, str(failure)):
                pytest.fail(f"the proof failed on the broken surgery, but not with {match!r}: {failure}")
            return failure
    pytest.fail(f"{getattr(check, '__name__', check)} passed on a broken surgery: it proves nothing")


def replaced(target: object, name: str, value: object) -> Breakage:
    """The breakage ``target.name = value`` (a module global, a class method, an object's attribute)."""
    return lambda monkeypatch: monkeypatch.setattr(target, name, value)


def wrapped(target: object, name: str, wrapper: Callable[[Any], object]) -> Breakage:
    """The breakage ``target.name = wrapper(original)``: a broken version built from the real one."""
    return lambda monkeypatch: monkeypatch.setattr(target, name, wrapper(getattr(target, name)))
