"""The plumbing that keeps per-step work cheap (issue 21): cached module walks and multi-tensor steps."""

from __future__ import annotations

import copy

import pytest
import torch as th
from torch import nn
from torch.nn.utils import prune

from rlsurgery.nets.modules import modules_of_type, parameters_of, set_submodule
from rlsurgery.nets.optim import prefer_foreach


def net() -> nn.Sequential:
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def test_cached_walks_follow_every_replacement_and_new_parameter():
    model = net()
    assert modules_of_type(model, nn.Linear) == (model[0], model[2])
    assert modules_of_type(model, nn.Linear) is modules_of_type(model, nn.Linear)  # cached
    set_submodule(model, "1", nn.Linear(4, 4))
    assert modules_of_type(model, nn.Linear) == (model[0], model[1], model[2])
    model[0] = nn.Sequential(nn.Linear(3, 4), nn.Tanh())  # a nested replacement
    assert modules_of_type(model, nn.Tanh) == (model[0][1],)
    assert parameters_of(model) == tuple(model.parameters())
    clone = copy.deepcopy(model)  # another root: its own walk
    assert modules_of_type(clone, nn.Linear) == tuple(m for m in clone.modules() if isinstance(m, nn.Linear))
    prune.l1_unstructured(model[2], "weight", amount=0.5)  # weight -> weight_orig (+ mask buffer)
    assert parameters_of(model) == tuple(model.parameters())
    model[2].extra = nn.Parameter(th.zeros(1))
    assert parameters_of(model) == tuple(model.parameters())


def train(optimizer_class, foreach: bool, **kwargs) -> list[th.Tensor]:
    th.manual_seed(0)
    model = net()
    optimizer = optimizer_class(model.parameters(), **kwargs)
    if foreach:
        prefer_foreach(optimizer)
        assert all(g["foreach"] for g in optimizer.param_groups)
    x = th.randn(40, 16, 3)
    for batch in x:
        optimizer.zero_grad()
        model(batch).pow(2).mean().backward()
        optimizer.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize(
    ("optimizer_class", "kwargs"),
    [
        (th.optim.Adam, dict(lr=1e-2)),
        (th.optim.Adam, dict(lr=1e-2, eps=1e-5, weight_decay=1e-3, amsgrad=True)),
        (th.optim.AdamW, dict(lr=1e-2)),
        (th.optim.RMSprop, dict(lr=1e-2, alpha=0.99, eps=1e-5)),
        (th.optim.SGD, dict(lr=1e-2, momentum=0.9)),
    ],
)
def test_the_multi_tensor_step_gives_the_same_parameters_bit_for_bit(optimizer_class, kwargs):
    per_tensor, multi_tensor = train(optimizer_class, False, **kwargs), train(optimizer_class, True, **kwargs)
    assert all(th.equal(a, b) for a, b in zip(per_tensor, multi_tensor))


def test_prefer_foreach_leaves_explicit_choices_and_other_optimizers_alone():
    params = list(net().parameters())
    chosen = th.optim.Adam(params, foreach=False)
    fused = th.optim.Adam(params, fused=True)

    class MyAdam(th.optim.Adam):
        pass

    subclass = MyAdam(params)
    for optimizer in (chosen, fused, subclass):
        prefer_foreach(optimizer)
    assert chosen.param_groups[0]["foreach"] is False
    assert fused.param_groups[0]["foreach"] is None
    assert subclass.param_groups[0]["foreach"] is None
