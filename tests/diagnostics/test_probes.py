"""Loss probes: the sweep and the landscape run on the agent's own loss and leave it exactly as it was."""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest
import torch as th

import rlsurgery as rls
from rlsurgery import SurgicalDQN, SurgicalPPO
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.diagnostics import probes
from rlsurgery.diagnostics.probes import LearningRateFinder, suggest_lr
from tests.breakage import assert_proof_fails_when, replaced, wrapped

KW = dict(
    learning_starts=20, batch_size=16, buffer_size=500, train_freq=1, policy_kwargs=dict(net_arch=[16, 16])
)


def state(model):
    return {k: v.clone() for k, v in model.policy.state_dict().items()}


def check_lr_finder_updates_at_each_rate_and_smooths_the_losses(tmp_path):
    """Loss i is measured at rate η_i = η_min (η_max/η_min)^(i/(N−1)) set in the agent's optimizer, after
    one real update at each earlier rate (the weights move, by about η); the curve is the EMA with
    bias correction of those losses (by hand), the sweep stops at the first 4× rise or runs its N
    steps, the suggestion is the steepest descent of the curve per log η; the agent comes back bit
    for bit."""
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, **KW).learn(200)
    before, optimizer_before = state(model), copy.deepcopy(model.policy.optimizer.state_dict())
    params = [q for group in model.policy.optimizer.param_groups for q in group["params"]]
    calls = []  # (the optimizer's rate, the raw loss, the parameters) at every loss evaluation
    measure = probes.loss_on_batch

    def recording(agent, batch, role=""):
        loss = measure(agent, batch, role)
        rate = agent.policy.optimizer.param_groups[0]["lr"]
        calls.append((rate, float(loss.detach()), [q.detach().clone() for q in params]))
        return loss

    png = tmp_path / "lr.png"
    lr_min, lr_max, steps, beta = 1e-6, 10.0, 40, 0.9
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(probes, "loss_on_batch", recording)
        rls.operate(
            model,
            f"learning_rate_finder:lr_min={lr_min},lr_max={lr_max},steps={steps},batch_size=16,png={png}",
        )
    result = model.surgery_state["learning_rate_finder"].result
    lrs, losses = result["lrs"], result["losses"]
    assert len(calls) == len(lrs) == len(losses) >= 10
    for i, (rate, _, _) in enumerate(calls):
        assert rate == pytest.approx(lr_min * (lr_max / lr_min) ** (i / (steps - 1)))
        assert lrs[i] == pytest.approx(rate)
    moves = [
        max(float((b - a).abs().max()) for a, b in zip(x[2], y[2])) for x, y in itertools.pairwise(calls)
    ]
    assert all(0 < move <= 10 * rate for move, (rate, _, _) in zip(moves, calls)), moves
    average, best, curve = 0.0, math.inf, []
    for i, (_, raw, _) in enumerate(calls):
        average = beta * average + (1 - beta) * raw
        curve.append(average / (1 - beta ** (i + 1)))
        best = min(best, curve[-1])
        stop = curve[-1] > 4 * best
        assert not stop or i == len(calls) - 1, f"the sweep went on after a 4x rise at step {i}"
    assert len(calls) == steps or stop
    np.testing.assert_allclose(losses, curve, rtol=1e-6)
    slopes = np.gradient(np.array(curve), np.log(np.array(lrs)))
    assert result["suggested"] == lrs[int(np.argmin(slopes))]
    assert png.is_file() and model.surgery_log[-1]["key"] == "learning_rate_finder"
    after = state(model)
    assert all(th.equal(before[k], after[k]) for k in before)  # bit for bit
    assert model.policy.optimizer.state_dict()["state"][0]["step"] == optimizer_before["state"][0]["step"]


def test_lr_finder_sweeps_and_restores(tmp_path):
    assert suggest_lr([1e-3, 1e-2, 1e-1, 1.0], [1.0, 0.9, 0.3, 5.0]) == 1e-2  # steepest fall at 1e-2 → 1e-1
    check_lr_finder_updates_at_each_rate_and_smooths_the_losses(tmp_path)
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, **KW).learn(200)
    rls.operate(model, "learning_rate_finder:steps=10,batch_size=16")
    model.learn(20, reset_num_timesteps=False)  # training goes on
    with pytest.raises(IncompatibleSurgeryError, match="replay buffer holds fewer than 16"):
        rls.operate(SurgicalDQN("MlpPolicy", "CartPole-v1", **KW), "learning_rate_finder:batch_size=16")


def test_lr_finder_proof_fails_without_updates_or_with_a_wrong_curve(tmp_path):
    check = check_lr_finder_updates_at_each_rate_and_smooths_the_losses

    def without_updates(probe):  # the rates are swept and reported, the optimizer never steps
        def broken(self, agent):
            with pytest.MonkeyPatch.context() as monkeypatch:
                monkeypatch.setattr(agent.policy.optimizer, "step", lambda *args, **kwargs: None)
                probe(self, agent)

        return broken

    assert_proof_fails_when(wrapped(LearningRateFinder, "probe", without_updates), check, tmp_path)

    def first_rate(lrs, losses):
        return lrs[0]

    assert_proof_fails_when(replaced(probes, "suggest_lr", first_rate), check, tmp_path)


def rows(tensor):
    return tensor.reshape(tensor.shape[0], -1)


def check_loss_landscape_is_the_loss_on_a_filter_normalised_plane(tmp_path):
    """Every grid point is evaluated at θ + α d₁ + β d₂ (the points recorded, d₁ and d₂ recovered from
    them): the two directions are distinct, each row of a weight matrix has the norm of that row of θ,
    biases do not move, and losses[j][i] is the agent's loss at (α_i, β_j), recomputed here; the agent
    comes back bit for bit."""
    model = SurgicalPPO("MlpPolicy", "CartPole-v1", seed=0, n_steps=64, batch_size=32, n_epochs=1).learn(64)
    before = state(model)
    params = [q for group in model.policy.optimizer.param_groups for q in group["params"]]
    origin = [q.detach().clone() for q in params]
    points, closures = [], []
    make_loss = probes.fixed_batch_loss

    def recording(agent, batch_size, key, role=""):
        loss_fn = make_loss(agent, batch_size, key, role)
        closures.append(loss_fn)

        def evaluate():
            points.append([q.detach() - o for q, o in zip(params, origin)])
            return loss_fn()

        return evaluate

    png = tmp_path / "landscape.png"
    span, n = 0.5, 5
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(probes, "fixed_batch_loss", recording)
        rls.operate(model, f"loss_landscape_visualization:resolution={n},span={span},batch_size=64,png={png}")
    assert all(th.equal(before[k], v) for k, v in state(model).items())
    land = model.surgery_state["loss_landscape_visualization"].result
    axis = np.linspace(-span, span, n)
    np.testing.assert_allclose(land["alphas"], axis)
    np.testing.assert_allclose(land["betas"], axis)
    grid = np.array(land["losses"])
    assert grid.shape == (n, n) and len(points) == n * n
    # Δθ of each evaluation, at (α, β) in the probe's order (α outer, β inner)
    moved = dict(zip(((a, b) for a in axis for b in axis), points))
    d1 = [v / span for v in moved[(span, 0.0)]]
    d2 = [v / span for v in moved[(0.0, span)]]
    for (a, b), delta in moved.items():
        for v, u, w in zip(delta, d1, d2):
            th.testing.assert_close(v, a * u + b * w, rtol=1e-4, atol=1e-5)
    cosine = sum(float((u * w).sum()) for u, w in zip(d1, d2)) / (
        math.sqrt(sum(float(u.pow(2).sum()) for u in d1)) * math.sqrt(sum(float(w.pow(2).sum()) for w in d2))
    )
    assert abs(cosine) < 0.5  # two different directions
    for q, u, w in zip(origin, d1, d2):
        if q.dim() <= 1:
            assert not u.any() and not w.any()  # biases stay
        else:
            for d in (u, w):
                th.testing.assert_close(rows(d).norm(dim=1), rows(q).norm(dim=1), rtol=1e-4, atol=1e-6)
    (loss_fn,) = closures
    model.policy.set_training_mode(False)
    with th.no_grad():
        for i, a in enumerate(axis):
            for j, b in enumerate(axis):
                for q, o, u, w in zip(params, origin, d1, d2):
                    q.copy_(o + a * u + b * w)
                assert grid[j][i] == pytest.approx(float(loss_fn()), rel=1e-4, abs=1e-6), (i, j)
        for q, o in zip(params, origin):
            q.copy_(o)
    assert len({round(v, 6) for v in grid.flatten()}) > 1 and png.is_file()


def test_loss_landscape_grid_and_restore(tmp_path):
    check_loss_landscape_is_the_loss_on_a_filter_normalised_plane(tmp_path)


def test_loss_landscape_proof_fails_on_plain_directions_or_a_transposed_grid(tmp_path):
    check = check_loss_landscape_is_the_loss_on_a_filter_normalised_plane

    def plain(params, generator):  # Gaussian directions, no filter normalisation
        return [th.randn(q.shape, generator=generator) for q in params]

    assert_proof_fails_when(replaced(probes, "filter_normalised_direction", plain), check, tmp_path)

    def transposed(probe):
        def broken(self, agent):
            probe(self, agent)
            land = agent.surgery_state["loss_landscape_visualization"].result
            land["losses"] = np.array(land["losses"]).T.tolist()

        return broken

    assert_proof_fails_when(wrapped(probes.LossLandscapeVisualization, "probe", transposed), check, tmp_path)

    def one_direction(direction):  # d₂ = d₁: a line drawn as a plane
        def broken(params, generator):
            return direction(params, th.Generator().manual_seed(0))

        return broken

    assert_proof_fails_when(wrapped(probes, "filter_normalised_direction", one_direction), check, tmp_path)
