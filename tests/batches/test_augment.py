"""Augmentations keep shapes and labels; mixup mixes as its formula says; the bandit follows UCB."""

from __future__ import annotations

import collections
import contextlib
import math
import types

import numpy as np
import pytest
import torch as th

import rlsurgery as rls
from rlsurgery import SurgicalDQN, SurgicalPPO
from rlsurgery.batches import augment
from rlsurgery.batches.augment import AutoAugment, cutmix, cutout, random_shift, ucb_choice
from rlsurgery.catalog import create
from rlsurgery.core.errors import IncompatibleSurgeryError
from tests.breakage import assert_proof_fails_when, replaced, wrapped
from tests.test_roundtrip import IMAGE_ENV, env_for

CNN = dict(
    buffer_size=200,
    learning_starts=16,
    batch_size=8,
    train_freq=1,
    policy_kwargs=dict(features_extractor_kwargs=dict(features_dim=16), net_arch=[16]),
)


def test_image_augmentations_keep_shapes_and_labels():
    th.manual_seed(0)
    x = th.randint(0, 256, (6, 1, 36, 36), dtype=th.uint8)
    for out in (random_shift(x, 4), cutout(x, 8), cutmix(x, 8)):
        assert out.shape == x.shape and out.dtype == x.dtype
    # shift: each image is its padded copy cropped: every row of the result is a row of the edge-padded input
    shifted = random_shift(x, 4)
    padded = th.nn.functional.pad(x.float(), (4, 4, 4, 4), mode="replicate")
    for i in range(6):
        assert any(
            th.equal(shifted[i, 0].float(), padded[i, 0, dy : dy + 36, dx : dx + 36])
            for dy in range(9)
            for dx in range(9)
        )
    # cutout: exactly one 8×8 square per image changed to 0 (where it was not 0 already)
    cut = cutout(x, 8)
    changed = (cut != x).flatten(1).sum(1)
    assert th.all(changed <= 64) and th.all((cut == 0) | (cut == x))
    # cutmix: the pixels that changed come from another image of the batch, at the same place
    mixed = cutmix(x, 8)
    for i in range(6):
        diff = mixed[i] != x[i]
        assert diff.sum() <= 64
        if diff.any():
            assert any(th.equal(mixed[i][diff], x[j][diff]) for j in range(6))
    # in DQN's update: the observations are augmented, actions / rewards untouched
    env_for(["attention_transfer"])
    model = SurgicalDQN(
        "CnnPolicy", IMAGE_ENV, seed=0, surgeries=["cutmix:mode=cutout,size=10"], **CNN
    ).learn(40)
    batch = model.sample_batch(8)
    raw = batch.observations.clone()
    actions, rewards = batch.actions.clone(), batch.rewards.clone()
    model.compute_loss(batch)
    assert batch.observations.shape == raw.shape and not th.equal(batch.observations, raw)
    assert th.equal(batch.actions, actions) and th.equal(batch.rewards, rewards)
    with pytest.raises(IncompatibleSurgeryError, match="cutmix: needs image observations"):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["cutmix"])
    SurgicalPPO(
        "CnnPolicy",
        IMAGE_ENV,
        seed=0,
        n_steps=32,
        batch_size=16,
        n_epochs=1,
        policy_kwargs=CNN["policy_kwargs"],
        surgeries=["cutmix:mode=shift"],
    ).learn(32)


#: the training return of the episodes played under each arm, in the bandit simulation below
ARM_RETURNS = {"shift": 1.0, "cutout": 5.0, "cutmix": 2.0}


@contextlib.contextmanager
def recorded_augmentations():
    """The names of the augmentations applied, in order, while the block runs."""
    applied: list[str] = []
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name, function in list(augment.AUGMENTATIONS.items()):
            monkeypatch.setitem(
                augment.AUGMENTATIONS, name, lambda x, k, f=function, n=name: (applied.append(n), f(x, k))[1]
            )
        yield applied


def check_autoaugment_follows_ucb_on_the_returns_of_each_arm():
    """A simulated training run: one episode ends per update with the return of the arm in use. At every
    ``every``-th update the bandit credits the arm with the episodes of its period only, then picks
    argmax Q_a + c·sqrt(ln N / N_a), untried first (computed here by hand); each update's batch is
    augmented by the arm picked."""
    c, every = 0.5, 3
    surgery = create(f"autoaugment:every={every},c={c}")
    arms = surgery.params.arms
    agent = types.SimpleNamespace(ep_info_buffer=collections.deque([{"r": -50.0}] * 10, maxlen=100))
    means, counts, arm, period = [0.0] * 3, [0] * 3, 0, []
    x = th.randint(0, 256, (4, 1, 36, 36), dtype=th.uint8)
    with recorded_augmentations() as applied:
        for update in range(90):
            if update and update % every == 0:
                counts[arm] += 1
                means[arm] += (sum(period) / len(period) - means[arm]) / counts[arm]
                n, untried = sum(counts), [a for a in range(3) if counts[a] == 0]
                ucb = [m + c * math.sqrt(math.log(n) / k) if k else math.inf for m, k in zip(means, counts)]
                arm = untried[0] if untried else int(np.argmax(ucb))
                period = []
            batch = types.SimpleNamespace(observations=x.clone(), next_observations=x.clone())
            surgery.augment(agent, batch)
            state = surgery.state(agent)
            assert state.arm == arm, (update, state.arm, arm, means, counts)
            assert applied[-2:] == [arms[arm]] * 2 and not th.equal(batch.observations, x)
            agent.ep_info_buffer.append({"r": ARM_RETURNS[arms[arm]]})
            period.append(ARM_RETURNS[arms[arm]])
    np.testing.assert_allclose(state.means, means)
    assert state.counts == counts and counts[1] > counts[0] + counts[2]  # the best arm is used most


def test_autoaugment_follows_the_ucb_choice(tmp_path):
    assert ucb_choice([0.0, 0.0, 0.0], [1, 0, 1], c=1.0) == 1  # untried first
    assert ucb_choice([10.0, 5.0], [10, 10], c=0.1) == 0
    assert ucb_choice([10.0, 9.9], [100, 1], c=1.0) == 1  # the rarely tried arm's bonus wins
    check_autoaugment_follows_ucb_on_the_returns_of_each_arm()
    # in a DQN's updates
    env_for(["attention_transfer"])
    model = SurgicalDQN("CnnPolicy", IMAGE_ENV, seed=0, surgeries=["autoaugment:every=5,c=0.5"], **CNN)
    model.learn(80)
    state = model.surgery_state["autoaugment"]
    assert sum(state.counts) >= 3 and all(n >= 1 for n in state.counts)  # every arm tried
    # the bandit is saved: a loaded model goes on with its means, counts and arm
    model.save(tmp_path / "bandit.zip")
    loaded = rls.load(tmp_path / "bandit.zip")
    restored = loaded.surgeries[0].state(loaded)
    assert (restored.means, restored.counts, restored.arm, restored.updates) == (
        state.means,
        state.counts,
        state.arm,
        state.updates,
    )


def test_autoaugment_proof_fails_on_round_robin_or_on_returns_of_other_arms():
    def round_robin(choose):
        def broken(self, agent):
            state = self.state(agent)
            previous = state.arm
            choose(self, agent)  # the crediting stays, the choice does not follow it
            state.arm = (previous + 1) % len(self.params.arms)

        return broken

    check = check_autoaugment_follows_ucb_on_the_returns_of_each_arm
    assert_proof_fails_when(wrapped(AutoAugment, "choose", round_robin), check)

    def whole_buffer(self, agent):  # the last 100 episodes, whichever arm played them
        return [float(e["r"]) for e in agent.ep_info_buffer]

    assert_proof_fails_when(replaced(AutoAugment, "new_returns", whole_buffer), check)

    def no_augmentation(self, agent, x):
        return x

    assert_proof_fails_when(replaced(AutoAugment, "augment_observations", no_augmentation), check)


def test_mixup_mixes_inputs_estimates_and_targets():
    model = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        surgeries=["mixup:alpha=0.4"],
        learning_starts=20,
        batch_size=16,
        buffer_size=500,
        train_freq=1,
        policy_kwargs=dict(net_arch=[16]),
    ).learn(60)
    batch = model.sample_batch(16)
    model.compute_loss(batch)
    (surgery,) = model.surgeries
    lam, perm = surgery.state(model).last_mix
    with th.no_grad():
        mixed = lam * batch.observations + (1 - lam) * batch.observations[perm]
        q = model.q_net(mixed)
        a = batch.actions.long()
        expected = lam * q.gather(1, a) + (1 - lam) * q.gather(1, a[perm])
    th.testing.assert_close(batch.current.detach(), expected)
    assert th.all((lam > 0) & (lam < 1))
    # the targets: the unmixed y (from the unmixed next states), mixed with the same λ and partners
    import dataclasses

    plain = dataclasses.replace(batch, target=None, next_actions=None, next_target_outputs=None)
    SurgicalDQN._default_next_action(model, plain)
    SurgicalDQN._default_target(model, plain)
    th.testing.assert_close(batch.target, lam * plain.target + (1 - lam) * plain.target[perm])
