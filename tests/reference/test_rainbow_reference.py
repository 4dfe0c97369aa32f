"""The composed Rainbow surgeries match a plain single-file Rainbow for several updates."""

from __future__ import annotations

import numpy as np
import torch as th

from rlsurgery import SurgicalDQN
from rlsurgery.exploration.noisy_nets import NoisyLinear
from tests.reference.rainbow_reference import PlainRainbowNet, rainbow_loss

SURGERIES = [
    "double_q_learning",
    "dueling_architecture",
    "distributional_rl:n_atoms=11,v_min=0,v_max=20",
    "prioritized_replay:alpha=0.6",
    "n_step_returns:n=3",
    "noisy_nets",
]


def copy_into(plain: PlainRainbowNet, library_net) -> None:
    layers = [m for m in library_net.q_net.modules() if isinstance(m, NoisyLinear)]
    assert len(layers) == len(plain.layers())
    with th.no_grad():
        for p, lib in zip(plain.layers(), layers):
            p.w_mu.copy_(lib.weight_mu)
            p.w_sigma.copy_(lib.weight_sigma)
            p.b_mu.copy_(lib.bias_mu)
            p.b_sigma.copy_(lib.bias_sigma)
            p.eps_in.copy_(lib.eps_in)
            p.eps_out.copy_(lib.eps_out)


def test_composed_surgeries_match_plain_rainbow_for_several_updates():
    model = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        learning_starts=10**9,
        gamma=0.9,
        learning_rate=1e-3,
        policy_kwargs=dict(net_arch=[32, 32]),
        surgeries=SURGERIES,
    )
    model.learn(400)  # fills the buffer; no updates yet
    online, target = PlainRainbowNet(4, 32, 2, 11), PlainRainbowNet(4, 32, 2, 11)
    copy_into(online, model.q_net)
    copy_into(target, model.q_net_target)
    optimizer = th.optim.Adam(online.parameters(), lr=1e-3)
    support = model.q_net.readout.support
    model.policy.set_training_mode(True)
    for step in range(4):
        np.random.seed(step)
        batch = model.sample_batch(32)
        loss = model.compute_loss(batch)
        ref_loss, ref_per_sample = rainbow_loss(online, target, batch, support)
        th.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
        th.testing.assert_close(batch.td_error, ref_per_sample, rtol=1e-5, atol=1e-6)
        # the library's update
        model.policy.optimizer.zero_grad()
        loss.backward()
        th.nn.utils.clip_grad_norm_(model.policy.parameters(), model.max_grad_norm)
        model.policy.optimizer.step()
        th.manual_seed(100 + step)
        model._pipeline.run_all("after_update", model, batch)
        # the plain update, with the same noise draws (the online network, then the target)
        optimizer.zero_grad()
        ref_loss.backward()
        th.nn.utils.clip_grad_norm_(online.parameters(), model.max_grad_norm)
        optimizer.step()
        th.manual_seed(100 + step)
        online.resample()
        target.resample()
        # priorities written from the per-sample loss
        unique, counts = np.unique(batch.indices, return_counts=True)
        once = unique[counts == 1]
        where = {int(i): k for k, i in enumerate(batch.indices)}
        expected = (ref_per_sample.numpy()[[where[int(i)] for i in once]] + 1e-6) ** 0.6
        np.testing.assert_allclose(model.replay_buffer.tree.get(once), expected, rtol=1e-4)
    lib_layers = [m for m in model.q_net.modules() if isinstance(m, NoisyLinear)]
    for plain, lib in zip(online.layers(), lib_layers):
        th.testing.assert_close(plain.w_mu, lib.weight_mu, rtol=1e-4, atol=1e-6)
        th.testing.assert_close(plain.w_sigma, lib.weight_sigma, rtol=1e-4, atol=1e-6)
        th.testing.assert_close(plain.eps_in, lib.eps_in)
