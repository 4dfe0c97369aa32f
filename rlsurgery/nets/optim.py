"""Rebuild an optimizer over a network whose parameters changed."""

from __future__ import annotations

from collections.abc import Iterable

import torch as th


def rebuild_optimizer(optimizer: th.optim.Optimizer, params: Iterable[th.nn.Parameter]) -> th.optim.Optimizer:
    """A new optimizer of the same class and hyper-parameters over ``params``.

    Per-parameter state (e.g. Adam moments) is carried over for parameters that survive
    the surgery (the same tensor objects); new parameters start fresh. The hyper-parameters
    of the first parameter group are kept (learning rate included).
    """
    params = list(params)
    group = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
    new = type(optimizer)(params, **group)
    for p in params:
        if p in optimizer.state:
            new.state[p] = optimizer.state[p]
    return new
