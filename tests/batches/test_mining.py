"""Hard example mining: each update trains on the B largest per-sample losses of m·B sampled."""

from __future__ import annotations

import torch as th

import rlsurgery as rls
from rlsurgery import SurgicalDQN
from rlsurgery.batches.mining import top_k_weights

KW = dict(learning_starts=20, batch_size=16, buffer_size=500, train_freq=1, policy_kwargs=dict(net_arch=[16]))


def test_the_update_trains_on_the_hardest_transitions(tmp_path):
    losses = th.tensor([0.1, 5.0, 0.3, 2.0, 0.2, 0.4, 9.0, 0.0])
    weights = top_k_weights(losses, 2)
    assert th.equal(weights, th.tensor([0, 4.0, 0, 0, 0, 0, 4.0, 0]))
    assert (weights * losses).mean() == (5.0 + 9.0) / 2  # the mean of the top 2
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, surgeries=["hard_example_mining:factor=4"], **KW)
    assert model.batch_size == 64 and model.surgery_state["hard_example_mining"].kept_batch_size == 16
    model.learn(60)
    batch = model.sample_batch(model.batch_size)
    loss = model.compute_loss(batch)
    top = batch.elementwise_loss.detach().topk(16).values.mean()
    th.testing.assert_close(loss.detach(), top)
    # the saved batch size is already m·B: a loaded model does not multiply it again
    model.save(tmp_path / "m.zip")
    loaded = rls.load(tmp_path / "m.zip")
    assert loaded.batch_size == 64 and loaded.surgery_state["hard_example_mining"].kept_batch_size == 16
    # composes with prioritized replay: its importance weights multiply in
    per = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        surgeries=["prioritized_replay", "hard_example_mining:factor=2"],
        **KW,
    ).learn(60)
    batch = per.sample_batch(per.batch_size)
    importance = batch.weights.clone().view(-1)
    loss = per.compute_loss(batch)
    keep = batch.elementwise_loss.detach().topk(16).indices
    th.testing.assert_close(
        loss.detach(),
        (importance[keep] * batch.elementwise_loss.detach()[keep]).mean(),  # the top-16 weighted mean
    )
