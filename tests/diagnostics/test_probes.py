"""Loss probes: the sweep and the landscape run on the agent's own loss and leave it exactly as it was."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch as th

import rlsurgery as rls
from rlsurgery import SurgicalDQN, SurgicalPPO
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.diagnostics.probes import suggest_lr

KW = dict(
    learning_starts=20, batch_size=16, buffer_size=500, train_freq=1, policy_kwargs=dict(net_arch=[16, 16])
)


def state(model):
    return {k: v.clone() for k, v in model.policy.state_dict().items()}


def test_lr_finder_sweeps_and_restores(tmp_path):
    assert suggest_lr([1e-3, 1e-2, 1e-1, 1.0], [1.0, 0.9, 0.3, 5.0]) == 1e-2  # steepest fall at 1e-2 → 1e-1
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, **KW).learn(200)
    before, optimizer_before = state(model), copy.deepcopy(model.policy.optimizer.state_dict())
    png = tmp_path / "lr.png"
    rls.operate(model, f"learning_rate_finder:lr_min=1e-5,lr_max=10,steps=40,batch_size=16,png={png}")
    result = model.rls_lr_finder
    lrs = result["lrs"]
    assert lrs[0] == pytest.approx(1e-5) and all(b > a for a, b in itertools.pairwise(lrs))
    assert len(lrs) == len(result["losses"]) <= 40 and result["suggested"] in lrs
    assert png.is_file() and model.surgery_log[-1]["key"] == "learning_rate_finder"
    after = state(model)
    assert all(th.equal(before[k], after[k]) for k in before)  # bit for bit
    assert model.policy.optimizer.state_dict()["state"][0]["step"] == optimizer_before["state"][0]["step"]
    model.learn(20, reset_num_timesteps=False)  # training goes on
    with pytest.raises(IncompatibleSurgeryError, match="replay buffer holds fewer than 16"):
        rls.operate(SurgicalDQN("MlpPolicy", "CartPole-v1", **KW), "learning_rate_finder:batch_size=16")


def test_loss_landscape_grid_and_restore(tmp_path):
    model = SurgicalPPO("MlpPolicy", "CartPole-v1", seed=0, n_steps=64, batch_size=32, n_epochs=1).learn(64)
    before = state(model)
    png = tmp_path / "landscape.png"
    rls.operate(model, f"loss_landscape_visualization:resolution=5,span=0.5,batch_size=64,png={png}")
    land = model.rls_loss_landscape
    assert land["alphas"] == pytest.approx([-0.5, -0.25, 0.0, 0.25, 0.5])
    grid = land["losses"]
    assert len(grid) == 5 and all(len(row) == 5 for row in grid)
    # the centre is the loss at θ itself; moving away changes it
    from rlsurgery.optim.loss import fixed_batch_loss

    assert all(th.equal(before[k], v) for k, v in state(model).items())
    model.policy.set_training_mode(False)
    with th.no_grad():
        centre = float(fixed_batch_loss(model, 64, "test")())
    assert grid[2][2] == pytest.approx(centre, rel=1e-5)
    assert len({round(v, 6) for row in grid for v in row}) > 1
    assert png.is_file()
